//! Measures the store's verified-stream paths alone, without a network:
//! encoding a whole blob for a peer, and ingesting that stream into a
//! second store. `cargo run --release --example stream_speed FILE`
#![allow(clippy::print_stdout)]

use std::time::Instant;

use p2pfs_store::{ChunkNum, ChunkRanges, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: stream_speed FILE")?;
    let dir = tempfile::tempdir()?;
    let a = Store::open(dir.path().join("a"))?;
    let b = Store::open(dir.path().join("b"))?;
    let t = Instant::now();
    let hash = a.import_file(std::path::Path::new(&path), None)?.hash;
    let size = a.info(&hash)?.map_or(0, |i| i.size);
    println!("import   {:.2} s", t.elapsed().as_secs_f64());
    let all = ChunkRanges::all();
    let t = Instant::now();
    a.encode_ranges(&hash, &all, std::io::sink())?;
    println!(
        "encode   {:.2} s ({:.0} MB/s)",
        t.elapsed().as_secs_f64(),
        size as f64 / t.elapsed().as_secs_f64() / 1e6
    );
    let mut stream = Vec::with_capacity(size as usize + size as usize / 200);
    a.encode_ranges(&hash, &all, &mut stream)?;
    let p = b.partial(hash)?;
    let tail = ChunkRanges::from(ChunkNum(u64::MAX / 2)..);
    let mut proof = Vec::new();
    a.encode_ranges(&hash, &tail, &mut proof)?;
    p.ingest(&tail, &proof[..])?;
    let t = Instant::now();
    p.ingest(&all, &stream[..])?;
    p.flush()?;
    println!(
        "ingest   {:.2} s ({:.0} MB/s)",
        t.elapsed().as_secs_f64(),
        size as f64 / t.elapsed().as_secs_f64() / 1e6
    );
    Ok(())
}

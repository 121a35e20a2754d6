//! Measures what storing blob data *inside* redb would cost, the design the
//! store rejects (see DESIGN.md): writes a file as fixed-size redb values,
//! one commit per 64 MiB, and reports the time and the database's size.
//!
//! `cargo run --release --example redb_blobs FILE DB VALUE_BYTES`

#![allow(clippy::print_stdout)]

use std::{io::Read, time::Instant};

use redb::{Database, TableDefinition};

const VALUES: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("values");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, src, db_path, value] = args.as_slice() else {
        return Err("usage: redb_blobs FILE DB VALUE_BYTES".into());
    };
    let value: usize = value.parse()?;
    let _ = std::fs::remove_file(db_path);
    let start = Instant::now();
    let db = Database::builder()
        .set_cache_size(64 << 20)
        .create(db_path)?;
    let mut file = std::fs::File::open(src)?;
    let mut buf = vec![0u8; value];
    let mut hasher = blake3::Hasher::new();
    let (mut key, mut in_txn) = (0u64, 0usize);
    let mut txn = db.begin_write()?;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        txn.open_table(VALUES)?.insert(key, &buf[..n])?;
        key += 1;
        in_txn += n;
        if in_txn >= 64 << 20 {
            txn.commit()?;
            txn = db.begin_write()?;
            in_txn = 0;
        }
    }
    txn.commit()?;
    drop(db);
    let secs = start.elapsed().as_secs_f64();
    let size = std::fs::metadata(db_path)?.len();
    let data = std::fs::metadata(src)?.len();
    println!(
        "redb values of {value} B: {secs:.2} s, {:.2} GB on disk for {:.2} GB of data",
        size as f64 / 1e9,
        data as f64 / 1e9
    );
    Ok(())
}

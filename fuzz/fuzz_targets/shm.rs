//! A directory for a fuzz target's stores that lasts as long as the
//! process (they are kept from run to run in statics, which are never
//! dropped): in `/dev/shm` where there is one, named after the target and
//! the process; those of processes gone (runs that ended or crashed) are
//! removed when the next one starts.

use std::{
    fs,
    path::{Path, PathBuf},
};

pub fn process_dir(target: &str) -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let prefix = format!("p2pfs-fuzz-{target}-");
    for e in fs::read_dir(&base).into_iter().flatten().flatten() {
        let name = e.file_name();
        if let Some(pid) = name.to_string_lossy().strip_prefix(&prefix)
            && !Path::new("/proc").join(pid).exists()
        {
            let _ = fs::remove_dir_all(e.path());
        }
    }
    let dir = base.join(format!("{prefix}{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// The bytes a bundle target reads: with `mutate`, `seed` with the bytes
/// the input names flipped (so the damage lands inside real streams, past
/// the magic and the headers), else the input itself.
#[allow(dead_code)]
pub fn seed_or_input(seed: &[u8], mutate: bool, bytes: Vec<u8>) -> Vec<u8> {
    if !mutate || bytes.is_empty() || seed.is_empty() {
        return bytes;
    }
    let mut d = seed.to_vec();
    for pair in bytes.chunks(3) {
        if let [a, b, x] = pair {
            let at = (usize::from(*a) << 8 | usize::from(*b)) % d.len();
            d[at] ^= x | 1;
        }
    }
    d
}

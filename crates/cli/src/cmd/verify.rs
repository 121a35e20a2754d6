//! `p2pfs verify`: re-read blobs and check them against their hashes.

use std::io::Write;

use p2pfs_proto::Hash;
use p2pfs_store::Store;

use crate::output;

/// Returns false if any blob failed.
pub(crate) fn run(store: &Store, hashes: &[Hash], out: &mut impl Write) -> anyhow::Result<bool> {
    let hashes: Vec<Hash> = if hashes.is_empty() {
        store.list()?.into_iter().map(|b| b.hash).collect()
    } else {
        hashes.to_vec()
    };
    let mut ok = true;
    for hash in hashes {
        match store.verify(&hash) {
            Ok(()) => output::line(out, &format!("{hash}  OK"))?,
            Err(e) => {
                ok = false;
                output::line(out, &format!("{hash}  FAILED: {e}"))?;
            }
        }
    }
    Ok(ok)
}

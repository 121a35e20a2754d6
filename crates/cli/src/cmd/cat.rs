//! `p2pfs cat`: write blobs to standard output.

use std::io::Write;

use anyhow::Context;
use p2pfs_proto::Hash;
use p2pfs_store::Store;

pub(crate) fn run(store: &Store, hashes: &[Hash], out: &mut impl Write) -> anyhow::Result<()> {
    for hash in hashes {
        let mut reader = store.reader(hash)?;
        reader
            .copy_to(out)
            .with_context(|| format!("writing blob {hash}"))?;
    }
    out.flush().context("writing to standard output")?;
    Ok(())
}

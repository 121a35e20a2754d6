//! `p2pfs pin` and `p2pfs unpin`.

use std::io::Write;

use p2pfs_proto::Hash;
use p2pfs_store::{Store, USER_PIN};

use crate::output;

pub(crate) fn pin(store: &Store, hashes: &[Hash], out: &mut impl Write) -> anyhow::Result<()> {
    for hash in hashes {
        let present = store.pin(hash, USER_PIN)?;
        let note = if present {
            "pinned"
        } else {
            "pinned (not in the local store yet)"
        };
        output::line(out, &format!("{hash}  {note}"))?;
    }
    Ok(())
}

pub(crate) fn unpin(store: &Store, hashes: &[Hash], out: &mut impl Write) -> anyhow::Result<()> {
    for hash in hashes {
        let note = if store.unpin(hash, USER_PIN)? {
            "unpinned"
        } else {
            "was not pinned"
        };
        output::line(out, &format!("{hash}  {note}"))?;
    }
    Ok(())
}

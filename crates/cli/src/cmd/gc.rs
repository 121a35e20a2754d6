//! `p2pfs gc`: remove what is not pinned.

use std::io::Write;

use p2pfs_store::Store;

use crate::output;

pub(crate) fn run(store: &Store, json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let report = store.gc()?;
    if json {
        return output::json(out, &report);
    }
    let mut text = format!(
        "removed {} blob{} ({})",
        report.removed.len(),
        if report.removed.len() == 1 { "" } else { "s" },
        output::human_bytes(report.freed_bytes)
    );
    if report.orphan_files > 0 {
        text.push_str(&format!(
            " and {} orphaned data file(s)",
            report.orphan_files
        ));
    }
    output::line(out, &text)?;
    Ok(())
}

//! `p2pfs gc`: remove what is not pinned.

use std::io::Write;

use crate::control::{Request, Response};

use crate::{cmd, output, session::Session};

pub(crate) async fn run(session: &Session, json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let mut report = None;
    cmd::each(session, Request::Gc, |r| {
        if let Response::Gc(r) = r {
            report = Some(r);
        }
        Ok(())
    })
    .await?;
    let report = report.unwrap_or_default();
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

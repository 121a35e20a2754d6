//! Where things live on disk.

use std::path::{Path, PathBuf};

use anyhow::bail;

/// The data directory: the flag or `P2PFS_DATA_DIR`, else the XDG default.
pub(crate) fn data_dir(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir.to_path_buf());
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(xdg).join("p2pfs"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/p2pfs")),
        None => bail!("cannot find a data directory: set --data-dir, P2PFS_DATA_DIR or HOME"),
    }
}

/// The display name saved in the data directory (`p2pfs daemon --name`),
/// or `P2PFS_NAME`; `None` for the host name.
pub(crate) fn display_name(data_dir: &Path) -> Option<String> {
    if let Ok(n) = std::env::var("P2PFS_NAME")
        && p2pfs_proto::room::valid_display_name(n.trim())
    {
        return Some(n.trim().to_string());
    }
    std::fs::read_to_string(data_dir.join("name"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| p2pfs_proto::room::valid_display_name(s))
}

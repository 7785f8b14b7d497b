//! Where `mp3conv login` keeps the token: `credentials.json` in the user's config directory
//! (`$MP3CONV_CONFIG_DIR`, else `$XDG_CONFIG_HOME/mp3conv`, else `~/.config/mp3conv`), written
//! with mode 0600 so other users cannot read it.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub server: String,
    pub email: String,
    pub token: String,
    /// Unix seconds.
    pub expires_at: u64,
}

pub fn dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("MP3CONV_CONFIG_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(config) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(config).join("mp3conv"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config").join("mp3conv"))
}

fn file() -> Option<PathBuf> {
    dir().map(|dir| dir.join("credentials.json"))
}

/// The stored login, if any.
pub fn load() -> Option<Credentials> {
    let text = std::fs::read_to_string(file()?).ok()?;
    serde_json::from_str(&text).ok()
}

/// Stores a login (replacing the previous one) with mode 0600.
pub fn save(credentials: &Credentials) -> anyhow::Result<PathBuf> {
    let path = file().ok_or_else(|| anyhow::anyhow!("no home directory to keep the token in"))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let temporary = path.with_extension("json.tmp");
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    out.write_all(serde_json::to_string_pretty(credentials)?.as_bytes())?;
    out.sync_all()?;
    std::fs::rename(&temporary, &path)?;
    Ok(path)
}

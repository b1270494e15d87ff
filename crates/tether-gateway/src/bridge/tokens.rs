//! Token files: `token: host:port` lines that map what a client presents to its backend,
//! re-read when the file changes.
//!
//! ```text
//! # VNC desktops
//! alice-desk: 10.0.3.17:5901
//! build-box:  [fd00::42]:5900
//! ```
//!
//! One token per line, up to the first `:`; surrounding spaces are ignored; blank lines and
//! lines starting with `#` are skipped. A token may not contain `:`, `/`, spaces or control
//! characters, and may appear once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::config::Target;

/// The largest token file read, so a wrong path (a log file, a disk image) cannot fill memory.
pub const MAX_TOKEN_FILE_SIZE: u64 = 16 << 20;

/// Tokens and their targets.
pub type TokenMap = HashMap<String, Target>;

/// Parses a token file; the error names the line.
pub fn parse_tokens(text: &str) -> Result<TokenMap, String> {
    let mut tokens = TokenMap::new();
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (token, target) = line
            .split_once(':')
            .ok_or_else(|| format!("line {number}: expected `token: host:port`"))?;
        let token = token.trim();
        if token.is_empty() {
            return Err(format!("line {number}: the token is empty"));
        }
        if token
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            return Err(format!(
                "line {number}: the token {token:?} contains a space, `/` or a control character"
            ));
        }
        let target = Target::parse(target).map_err(|e| format!("line {number}: {e}"))?;
        if tokens.insert(token.to_string(), target).is_some() {
            return Err(format!("line {number}: the token {token:?} appears twice"));
        }
    }
    Ok(tokens)
}

/// What identifies one version of the file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: u64,
}

impl Stamp {
    fn of(metadata: &std::fs::Metadata) -> Stamp {
        Stamp {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            #[cfg(unix)]
            inode: std::os::unix::fs::MetadataExt::ino(metadata),
        }
    }
}

struct Loaded {
    tokens: Arc<TokenMap>,
    stamp: Option<Stamp>,
}

/// A token file and the last good version of its tokens.
///
/// [`TokenFile::tokens`] costs one `stat` while the file is unchanged; when its time, length
/// or inode change, it is read again. A file that no longer parses (or is gone) is logged and
/// the last good tokens stay in force.
pub struct TokenFile {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

impl TokenFile {
    /// Reads the file for the first time; an error here stops the gateway from starting.
    pub fn open(path: &Path) -> Result<TokenFile, String> {
        let (tokens, stamp) = read(path)?;
        Ok(TokenFile {
            path: path.to_path_buf(),
            loaded: Mutex::new(Loaded {
                tokens: Arc::new(tokens),
                stamp: Some(stamp),
            }),
        })
    }

    /// The current tokens, re-read first if the file changed.
    pub fn tokens(&self) -> Arc<TokenMap> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        let stamp = std::fs::metadata(&self.path).map(|m| Stamp::of(&m));
        match stamp {
            Ok(stamp) if loaded.stamp == Some(stamp) => {}
            Ok(_) => match read(&self.path) {
                Ok((tokens, stamp)) => {
                    tracing::info!(
                        file = %self.path.display(),
                        "token file reloaded: {} tokens",
                        tokens.len()
                    );
                    loaded.tokens = Arc::new(tokens);
                    loaded.stamp = Some(stamp);
                }
                Err(e) => {
                    tracing::warn!(
                        file = %self.path.display(),
                        "token file not reloaded, keeping the last good tokens: {e}"
                    );
                    // Retried when the file changes again.
                    loaded.stamp = std::fs::metadata(&self.path).ok().map(|m| Stamp::of(&m));
                }
            },
            Err(e) => {
                if loaded.stamp.is_some() {
                    tracing::warn!(
                        file = %self.path.display(),
                        "token file unreadable, keeping the last good tokens: {e}"
                    );
                    loaded.stamp = None;
                }
            }
        }
        loaded.tokens.clone()
    }
}

/// Reads and parses the file, with the stamp of the version read.
fn read(path: &Path) -> Result<(TokenMap, Stamp), String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let metadata = file
        .metadata()
        .map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
    if metadata.len() > MAX_TOKEN_FILE_SIZE {
        return Err(format!(
            "{} is {} bytes, more than the 16 MiB a token file may hold",
            path.display(),
            metadata.len()
        ));
    }
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(&file, MAX_TOKEN_FILE_SIZE),
        &mut text,
    )
    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let tokens = parse_tokens(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((tokens, Stamp::of(&metadata)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_comments_and_blanks() {
        let tokens = parse_tokens(
            "# desktops\n\nalice: 10.0.0.5:5901\n  bob :[::1]:5900  \r\ncarol:redis.internal:6379\n",
        )
        .unwrap();
        assert_eq!(tokens.len(), 3);
        assert_eq!(tokens["alice"].to_string(), "10.0.0.5:5901");
        assert_eq!(tokens["bob"].to_string(), "[::1]:5900");
        assert_eq!(tokens["carol"].host, "redis.internal");
        assert_eq!(tokens["carol"].port, 6379);
    }

    #[test]
    fn bad_lines_are_named() {
        let err = |text: &str| parse_tokens(text).unwrap_err();
        assert_eq!(
            err("a: 1.2.3.4:5\nno colon here\n"),
            "line 2: expected `token: host:port`"
        );
        assert!(err(": 1.2.3.4:5").contains("line 1: the token is empty"));
        assert!(err("a b: 1.2.3.4:5").contains("contains a space"));
        assert!(err("a/b: 1.2.3.4:5").contains("contains a space, `/`"));
        assert!(err("a: 1.2.3.4").starts_with("line 1: \"1.2.3.4\" is not host:port"));
        assert!(err("a: h:1\na: h:2").contains("line 2: the token \"a\" appears twice"));
    }

    #[test]
    fn reloads_on_change_and_keeps_the_last_good_tokens() {
        let dir = std::env::temp_dir().join(format!("tether-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens.txt");
        std::fs::write(&path, "a: 127.0.0.1:1\n").unwrap();
        let file = TokenFile::open(&path).unwrap();
        assert!(file.tokens().contains_key("a"));
        std::fs::write(&path, "a: 127.0.0.1:1\nbb: 127.0.0.1:2\n").unwrap();
        assert_eq!(file.tokens()["bb"].port, 2);
        std::fs::write(&path, "broken line without the separator\n").unwrap();
        assert_eq!(file.tokens().len(), 2, "a bad edit keeps the last good map");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            file.tokens().len(),
            2,
            "a removed file keeps the last good map"
        );
        std::fs::write(&path, "c: 127.0.0.1:3\n").unwrap();
        assert_eq!(file.tokens().keys().collect::<Vec<_>>(), vec!["c"]);
        assert!(TokenFile::open(&dir.join("missing.txt")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

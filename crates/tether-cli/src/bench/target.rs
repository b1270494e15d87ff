//! The server under load: a `ws://` URL, resolved once before the run.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// A parsed `ws://host[:port]/path?query`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// The host name or IP literal (without brackets).
    pub host: String,
    /// The port (80 by default).
    pub port: u16,
    /// The `Host` header value.
    pub authority: String,
    /// Path and query, starting with `/`.
    pub resource: String,
}

impl FromStr for Target {
    type Err = String;

    fn from_str(url: &str) -> Result<Target, String> {
        let rest = match url.split_once("://") {
            Some(("ws", rest)) => rest,
            Some(("wss", _)) => {
                return Err("wss:// is not supported: the load tool speaks plain TCP".into());
            }
            _ => return Err(format!("{url:?} is not a ws:// URL")),
        };
        let (authority, resource) = match rest.find(['/', '?']) {
            Some(at) if rest.as_bytes()[at] == b'?' => (&rest[..at], format!("/{}", &rest[at..])),
            Some(at) => (&rest[..at], rest[at..].to_string()),
            None => (rest, "/".to_string()),
        };
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| format!("{url:?}: cannot read host and port"))?;
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        Ok(Target {
            url: url.to_string(),
            host,
            port,
            authority: authority.to_string(),
            resource,
        })
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(authority: &str) -> Option<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().ok()?,
            None if after.is_empty() => 80,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None => Some((authority.to_string(), 80)),
    }
}

impl Target {
    /// The first address the host resolves to.
    pub async fn resolve(&self) -> Result<SocketAddr, String> {
        let mut addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?;
        addrs
            .next()
            .ok_or_else(|| format!("{} resolves to no address", self.host))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_and_resource() {
        let t: Target = "ws://127.0.0.1:9001/echo?x=1".parse().unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 9001));
        assert_eq!(t.resource, "/echo?x=1");
        assert_eq!(t.authority, "127.0.0.1:9001");
        let t: Target = "ws://[::1]/".parse().unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 80));
        let t: Target = "ws://example.com".parse().unwrap();
        assert_eq!(t.resource, "/");
        assert!("wss://example.com/".parse::<Target>().is_err());
        assert!("http://example.com/".parse::<Target>().is_err());
        assert!("ws://:80/".parse::<Target>().is_err());
    }
}

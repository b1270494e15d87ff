//! The gateway's configuration: one TOML file (`tether.example.toml` documents every key),
//! read into [`GatewayConfig`] and checked before anything starts.
//!
//! Errors name the key and the problem, e.g. `routes[1].kind: unknown kind "foo", expected
//! pubsub, echo, bridge or proxy (line 9, column 8)`.

mod auth;
mod bridge;
mod limits;
pub mod proxy;
mod routes;
pub mod units;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::hub::HubConfig;

pub use auth::{AnonymousConfig, AuthConfig, JwtAlgorithm, JwtConfig, TokenConfig};
pub use bridge::{
    BINARY_SUBPROTOCOL, BridgeConfig, DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_BUFFER_SIZE,
    MAX_READ_BUFFER_SIZE, ProxyProtocol, Target,
};
pub use limits::Limits;
pub use routes::{RouteConfig, RouteKind};

/// The address `tether serve` listens on when nothing says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Everything the gateway needs to start. `Default` is what `tether serve` runs without a
/// config file: plain HTTP on `127.0.0.1:8080`, the built-in page at `/`, pub/sub at `/ws`,
/// echo at `/echo`, demo feeds on, no auth, no TLS.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Plain-text (`http`/`ws`) listen address, e.g. `"127.0.0.1:8080"` or `"[::]:80"`.
    pub listen: String,
    /// Run the demo feeds (`stocks.*`, `scores.*`). Default `true`.
    pub demo: bool,
    /// Browser origins allowed to open WebSockets (e.g. `"https://example.com"`); others get
    /// 403. Default: any. Routes may override it.
    pub allowed_origins: Option<Vec<String>>,
    /// After a shutdown signal, how long clients get to finish their closing handshakes before
    /// the gateway exits anyway. Default 10 s.
    #[serde(deserialize_with = "units::duration")]
    pub shutdown_timeout: Duration,
    /// The WebSocket routes. Default: `/ws` pubsub and `/echo` echo. Giving any replaces both.
    pub routes: Vec<RouteConfig>,
    /// Static files served for every other `GET`. Default: the built-in page.
    #[serde(rename = "static")]
    pub static_files: StaticConfig,
    /// Limits per connection, per client and overall.
    pub limits: Limits,
    /// TLS (`https`/`wss`) listener. Default: none.
    pub tls: Option<TlsConfig>,
    /// Bearer tokens and JWT. Default: none, everyone may do everything.
    pub auth: AuthConfig,
    /// The pub/sub hub: history, queues, slow consumers, per-topic policies.
    pub hub: HubConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: DEFAULT_LISTEN.to_string(),
            demo: true,
            allowed_origins: None,
            shutdown_timeout: Duration::from_secs(10),
            routes: vec![
                RouteConfig::new("/ws", RouteKind::Pubsub),
                RouteConfig::new("/echo", RouteKind::Echo),
            ],
            static_files: StaticConfig::default(),
            limits: Limits::default(),
            tls: None,
            auth: AuthConfig::default(),
            hub: HubConfig::default(),
        }
    }
}

/// `[static]`: where pages come from.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StaticConfig {
    /// Serve files from this directory instead of the built-in page. Relative paths are taken
    /// from the config file's directory.
    pub root: Option<PathBuf>,
    /// The file served for a directory (`/`, `/docs/`). Default `"index.html"`.
    pub index: String,
}

impl Default for StaticConfig {
    fn default() -> Self {
        StaticConfig {
            root: None,
            index: "index.html".to_string(),
        }
    }
}

/// `[tls]`: an `https`/`wss` listener beside (or instead of) the plain one.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Listen address, e.g. `"0.0.0.0:8443"`.
    pub listen: String,
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Serve only TLS: no plain listener. Default `false`.
    #[serde(default)]
    pub only: bool,
}

/// Settings given on the command line or in the environment, which win over the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--listen`: the plain listen address.
    pub listen: Option<String>,
    /// `--tls-listen`: the TLS listen address.
    pub tls_listen: Option<String>,
    /// `--cert`: the certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// `--key`: the private key (PEM).
    pub key: Option<PathBuf>,
    /// `--tls-only`: no plain listener.
    pub tls_only: bool,
    /// `--static-root`: serve files from this directory.
    pub static_root: Option<PathBuf>,
    /// `--no-demo`: no demo feeds.
    pub no_demo: bool,
}

impl Overrides {
    /// Applies the overrides to `config` and validates the result. TLS from flags alone needs
    /// all of `--tls-listen`, `--cert` and `--key`; with `[tls]` in the file, each replaces its
    /// key.
    pub fn apply(self, config: &mut GatewayConfig) -> Result<(), ConfigError> {
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        match (config.tls.as_mut(), self.tls_listen, self.cert, self.key) {
            (Some(tls), listen, cert, key) => {
                tls.listen = listen.unwrap_or_else(|| tls.listen.clone());
                tls.cert = cert.unwrap_or_else(|| tls.cert.clone());
                tls.key = key.unwrap_or_else(|| tls.key.clone());
            }
            (None, Some(listen), Some(cert), Some(key)) => {
                config.tls = Some(TlsConfig {
                    listen,
                    cert,
                    key,
                    only: false,
                });
            }
            (None, None, None, None) => {}
            (None, ..) => {
                return Err(ConfigError::new(
                    "tls",
                    "serving TLS needs --tls-listen, --cert and --key together (or [tls] in the \
                     config file)",
                ));
            }
        }
        if self.tls_only {
            match config.tls.as_mut() {
                Some(tls) => tls.only = true,
                None => {
                    return Err(ConfigError::new(
                        "tls.only",
                        "--tls-only needs TLS: --tls-listen, --cert and --key",
                    ));
                }
            }
        }
        if let Some(root) = self.static_root {
            config.static_files.root = Some(root);
        }
        if self.no_demo {
            config.demo = false;
        }
        config.validate()
    }
}

/// A configuration that cannot work: the key (`routes[1].kind`, `limits.max_connections`)
/// and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The dotted path of the offending key; empty when the problem is the file itself.
    pub key: String,
    /// What is wrong.
    pub problem: String,
    /// Line and column in the file, when known.
    pub location: Option<(usize, usize)>,
}

impl ConfigError {
    /// An error about `key`.
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            problem: problem.into(),
            location: None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.problem)?;
        if let Some((line, column)) = self.location {
            write!(f, " (line {line}, column {column})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl GatewayConfig {
    /// Parses and validates a TOML document. Relative paths stay as written.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config = parse(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a config file; relative paths in it (static root,
    /// certificates, keys) are taken from the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))?;
        let mut config = parse(&text)?;
        let base = path.parent().unwrap_or(Path::new(""));
        config.resolve_paths(base);
        config.validate()?;
        Ok(config)
    }

    /// Makes the relative file paths in the config relative to `base` instead.
    pub fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(root) = self.static_files.root.as_mut() {
            resolve(root);
        }
        if let Some(tls) = self.tls.as_mut() {
            resolve(&mut tls.cert);
            resolve(&mut tls.key);
        }
        for route in &mut self.routes {
            let bridge = &mut route.bridge;
            bridge.token_file.iter_mut().for_each(resolve);
            bridge.tls_ca_file.iter_mut().for_each(resolve);
            if let Some(ca) = route.upstream_ca_file.as_mut() {
                resolve(ca);
            }
        }
        if let Some(key) = self
            .auth
            .jwt
            .as_mut()
            .and_then(|j| j.public_key_file.as_mut())
        {
            resolve(key);
        }
    }

    /// Checks everything that can be checked without touching the file system or network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let tls_only = self.tls.as_ref().is_some_and(|t| t.only);
        if !tls_only && self.listen.trim().is_empty() {
            return Err(ConfigError::new(
                "listen",
                "must be an address such as \"127.0.0.1:8080\"",
            ));
        }
        if let Some(tls) = &self.tls
            && tls.listen.trim().is_empty()
        {
            return Err(ConfigError::new(
                "tls.listen",
                "must be an address such as \"0.0.0.0:8443\"",
            ));
        }
        if let Some(origins) = &self.allowed_origins {
            validate_origins(origins).map_err(|p| ConfigError::new("allowed_origins", p))?;
        }
        for (i, route) in self.routes.iter().enumerate() {
            route.validate().map_err(|(key, problem)| {
                ConfigError::new(format!("routes[{i}].{key}"), problem)
            })?;
            if route.bridge.jwt_claim.is_some() && self.auth.jwt.is_none() {
                return Err(ConfigError::new(
                    format!("routes[{i}].jwt_claim"),
                    "needs [auth.jwt] to verify the tokens",
                ));
            }
            if let Some(j) = self.routes[..i].iter().position(|r| r.path == route.path) {
                return Err(ConfigError::new(
                    format!("routes[{i}].path"),
                    format!("{:?} is already the path of routes[{j}]", route.path),
                ));
            }
        }
        if self.static_files.index.is_empty() || self.static_files.index.contains(['/', '\\']) {
            return Err(ConfigError::new(
                "static.index",
                "must be a file name such as \"index.html\"",
            ));
        }
        self.limits
            .validate()
            .map_err(|(key, problem)| ConfigError::new(format!("limits.{key}"), problem))?;
        self.auth
            .validate()
            .map_err(|(key, problem)| ConfigError::new(format!("auth.{key}"), problem))?;
        // The hub's messages start with the key: "hub.topics[0].pattern: ...".
        self.hub
            .validate()
            .map_err(|message| match message.split_once(": ") {
                Some((key, problem)) if key.starts_with("hub") => ConfigError::new(key, problem),
                _ => ConfigError::new("hub", message),
            })?;
        Ok(())
    }
}

/// Parses without validating; errors carry the key path and the line.
fn parse(text: &str) -> Result<GatewayConfig, ConfigError> {
    let located = |e: &toml::de::Error| {
        e.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |n| n + 1) + 1;
            (line, column)
        })
    };
    let deserializer = toml::Deserializer::parse(text).map_err(|e| {
        // Show what the span covers (e.g. the duplicated key), when it is short.
        let near = e
            .span()
            .and_then(|span| text.get(span))
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 60 && !s.contains('\n'))
            .map_or(String::new(), |s| format!(" at `{s}`"));
        ConfigError {
            key: String::new(),
            problem: format!("invalid TOML: {}{near}", e.message()),
            location: located(&e),
        }
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        ConfigError {
            key: if key == "." { String::new() } else { key },
            problem: inner.message().to_string(),
            location: located(&inner),
        }
    })
}

/// Checks a list of origins: `scheme://host[:port]`, no path.
pub(crate) fn validate_origins(origins: &[String]) -> Result<(), String> {
    for origin in origins {
        let ok = origin.split_once("://").is_some_and(|(scheme, rest)| {
            !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                && !rest.is_empty()
                && !rest.contains(['/', '?', '#', ' '])
        });
        if !ok {
            return Err(format!(
                "{origin:?} is not an origin such as \"https://example.com\" (scheme://host[:port], no path)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

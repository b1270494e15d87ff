//! `[auth]`: static bearer tokens and JWT verification, each mapped to topic permissions.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::units;
use crate::hub::Pattern;

/// Who may connect, subscribe and publish. With no tokens and no `[auth.jwt]`, everyone may do
/// everything.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Static bearer tokens (`[[auth.tokens]]`), each with its permissions.
    pub tokens: Vec<TokenConfig>,
    /// JSON Web Tokens (`[auth.jwt]`).
    pub jwt: Option<JwtConfig>,
    /// What a client without a token may do (`[auth.anonymous]`). Default: when tokens or JWT
    /// are configured, a request without a token is refused with 401.
    pub anonymous: Option<AnonymousConfig>,
}

/// The permissions of clients that present no token.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AnonymousConfig {
    /// Topic patterns anyone may subscribe to, e.g. `["scores.*"]`.
    pub subscribe: Vec<String>,
    /// Topic patterns anyone may publish to (usually none).
    pub publish: Vec<String>,
}

impl AuthConfig {
    /// Whether any credential is configured, so requests without one are refused.
    pub fn is_enabled(&self) -> bool {
        !self.tokens.is_empty() || self.jwt.is_some() || self.anonymous.is_some()
    }
}

/// A static bearer token and what it allows.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// The token itself. Give this or `token_env`.
    pub token: Option<String>,
    /// The name of an environment variable holding the token, to keep it out of the file.
    pub token_env: Option<String>,
    /// Topic patterns the holder may subscribe to: `"scores.live"`, `"stocks.*"`, `"*"`.
    pub subscribe: Vec<String>,
    /// Topic patterns the holder may publish to.
    pub publish: Vec<String>,
}

/// The signature algorithm a JWT must carry (its header's `alg`); any other is refused, `none`
/// included.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 and a shared `secret`.
    #[default]
    HS256,
    /// RSA PKCS#1 v1.5 with SHA-256, verified with `public_key_file` (PEM).
    RS256,
}

/// How to verify JSON Web Tokens. A valid token's claims `sub` and `pub` (arrays of topic
/// patterns) say what its holder may subscribe to and publish; a token without them gets
/// `default_subscribe` / `default_publish`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// `"HS256"` (default) or `"RS256"`.
    #[serde(default)]
    pub algorithm: JwtAlgorithm,
    /// HS256: the shared secret. Give this or `secret_env`.
    #[serde(default)]
    pub secret: Option<String>,
    /// HS256: the name of an environment variable holding the secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// RS256: the PEM file with the RSA public key.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// When set, the token's `iss` must equal it.
    #[serde(default)]
    pub issuer: Option<String>,
    /// When set, the token's `aud` must contain it.
    #[serde(default)]
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`. Default 30 s.
    #[serde(default = "default_leeway", deserialize_with = "units::duration")]
    pub leeway: Duration,
    /// Refuse tokens without `exp`. Default `true`.
    #[serde(default = "yes")]
    pub require_exp: bool,
    /// Subscribe patterns for a token without a `sub` array. Default none.
    #[serde(default)]
    pub default_subscribe: Vec<String>,
    /// Publish patterns for a token without a `pub` array. Default none.
    #[serde(default)]
    pub default_publish: Vec<String>,
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

fn yes() -> bool {
    true
}

/// Checks a list of topic patterns: `"*"`, an exact topic, or `"prefix.*"`, by the hub's
/// rules.
pub(crate) fn validate_patterns(patterns: &[String]) -> Result<(), String> {
    patterns
        .iter()
        .try_for_each(|p| Pattern::parse(p).map(drop))
}

impl AuthConfig {
    /// Checks the section; errors name the key below `auth`.
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        for (i, token) in self.tokens.iter().enumerate() {
            let key = |k: &str| format!("tokens[{i}].{k}");
            match (&token.token, &token.token_env) {
                (Some(_), Some(_)) => {
                    return Err((key("token"), "give token or token_env, not both".into()));
                }
                (None, None) => return Err((key("token"), "missing (or token_env)".into())),
                (Some(t), None) if t.len() < 8 => {
                    return Err((key("token"), "must be at least 8 characters".into()));
                }
                _ => {}
            }
            validate_patterns(&token.subscribe).map_err(|p| (key("subscribe"), p))?;
            validate_patterns(&token.publish).map_err(|p| (key("publish"), p))?;
        }
        if let Some(jwt) = &self.jwt {
            let key = |k: &str| format!("jwt.{k}");
            match jwt.algorithm {
                JwtAlgorithm::HS256 => {
                    if jwt.public_key_file.is_some() {
                        return Err((
                            key("public_key_file"),
                            "is for RS256; HS256 uses secret".into(),
                        ));
                    }
                    match (&jwt.secret, &jwt.secret_env) {
                        (Some(_), Some(_)) => {
                            return Err((
                                key("secret"),
                                "give secret or secret_env, not both".into(),
                            ));
                        }
                        (None, None) => {
                            return Err((key("secret"), "HS256 needs secret or secret_env".into()));
                        }
                        (Some(s), None) if s.len() < 32 => {
                            return Err((
                                key("secret"),
                                "must be at least 32 bytes for HS256 (RFC 7518 §3.2)".into(),
                            ));
                        }
                        _ => {}
                    }
                }
                JwtAlgorithm::RS256 => {
                    if jwt.public_key_file.is_none() {
                        return Err((
                            key("public_key_file"),
                            "RS256 needs a PEM public key".into(),
                        ));
                    }
                    if jwt.secret.is_some() || jwt.secret_env.is_some() {
                        return Err((
                            key("secret"),
                            "is for HS256; RS256 uses public_key_file".into(),
                        ));
                    }
                }
            }
            validate_patterns(&jwt.default_subscribe).map_err(|p| (key("default_subscribe"), p))?;
            validate_patterns(&jwt.default_publish).map_err(|p| (key("default_publish"), p))?;
        }
        if let Some(anonymous) = &self.anonymous {
            validate_patterns(&anonymous.subscribe)
                .map_err(|p| ("anonymous.subscribe".to_string(), p))?;
            validate_patterns(&anonymous.publish)
                .map_err(|p| ("anonymous.publish".to_string(), p))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let ok = |p: &str| validate_patterns(&[p.to_string()]).is_ok();
        assert!(ok("*"));
        assert!(ok("stocks.*"));
        assert!(ok("scores.final"));
        assert!(ok("a.b.*"));
        assert!(!ok(""));
        assert!(!ok("stocks*"));
        assert!(!ok("*.x"));
        assert!(!ok("a..b"));
        assert!(!ok(".*"));
    }

    #[test]
    fn tokens_need_a_value_and_valid_patterns() {
        let auth: AuthConfig = toml::from_str("[[tokens]]\nsubscribe = [\"*\"]\n").unwrap();
        assert_eq!(auth.validate().unwrap_err().0, "tokens[0].token");
        let auth: AuthConfig =
            toml::from_str("[[tokens]]\ntoken = \"0123456789\"\npublish = [\"bad*\"]\n").unwrap();
        assert_eq!(auth.validate().unwrap_err().0, "tokens[0].publish");
    }

    #[test]
    fn jwt_algorithm_needs_its_key() {
        let auth: AuthConfig = toml::from_str("[jwt]\nalgorithm = \"RS256\"\n").unwrap();
        assert_eq!(auth.validate().unwrap_err().0, "jwt.public_key_file");
        let auth: AuthConfig = toml::from_str("[jwt]\nsecret = \"short\"\n").unwrap();
        assert!(auth.validate().unwrap_err().1.contains("32 bytes"));
        assert!(toml::from_str::<AuthConfig>("[jwt]\nalgorithm = \"none\"\n").is_err());
    }
}

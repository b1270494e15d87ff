//! Who is asking: static bearer tokens and JWTs (HS256, RS256), turned into [`Permissions`].

use std::fmt;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use crate::config::{AuthConfig, ConfigError, JwtAlgorithm, JwtConfig};
use crate::hub::Permissions;

/// Why a request's credentials were refused. Both mean HTTP 401.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AuthError {
    /// No token, and anonymous access is not configured.
    Missing,
    /// A token that is neither a known static token nor a valid JWT.
    Invalid(String),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Missing => f.write_str(
                "a bearer token is required (Authorization: Bearer <token>, or ?token=<token>)",
            ),
            AuthError::Invalid(why) => write!(f, "invalid token: {why}"),
        }
    }
}

/// Checks credentials against the `[auth]` config.
pub(crate) struct Authenticator {
    enabled: bool,
    tokens: Vec<(Vec<u8>, Permissions)>,
    jwt: Option<JwtVerifier>,
    anonymous: Option<Permissions>,
}

struct JwtVerifier {
    key: DecodingKey,
    algorithm: Algorithm,
    leeway_secs: f64,
    require_exp: bool,
    issuer: Option<String>,
    audience: Option<String>,
    default_subscribe: Vec<String>,
    default_publish: Vec<String>,
}

/// The claims of a JWT that Tether reads.
///
/// The registered claims are checked here rather than by `jsonwebtoken::decode`, which fails
/// on any token whose `sub` is not a string, and `sub` is where Tether's subscribe patterns go.
#[derive(Deserialize)]
struct Claims {
    /// Expiry, seconds since the epoch (RFC 7519 §4.1.4).
    #[serde(default)]
    exp: Option<f64>,
    /// Not before, seconds since the epoch (RFC 7519 §4.1.5).
    #[serde(default)]
    nbf: Option<f64>,
    /// Issuer (RFC 7519 §4.1.1).
    #[serde(default)]
    iss: Option<String>,
    /// Audience: one string or several (RFC 7519 §4.1.3).
    #[serde(default)]
    aud: Option<OneOrMany>,
    /// Subscribe patterns. RFC 7519 §4.1.2 also defines `sub` as the subject, a string: a
    /// string `sub` is taken as the subject and the configured default applies.
    #[serde(default)]
    sub: Option<serde_json::Value>,
    /// Publish patterns.
    #[serde(default, rename = "pub")]
    publish: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl Authenticator {
    /// Builds the checker, reading secrets from the environment and keys from files.
    pub(crate) fn new(config: &AuthConfig) -> Result<Self, ConfigError> {
        let mut tokens = Vec::with_capacity(config.tokens.len());
        for (i, token) in config.tokens.iter().enumerate() {
            let value = match (&token.token, &token.token_env) {
                (Some(t), _) => t.clone(),
                (None, Some(var)) => env_secret(var, &format!("auth.tokens[{i}].token_env"))?,
                (None, None) => {
                    return Err(ConfigError::new(
                        format!("auth.tokens[{i}].token"),
                        "missing",
                    ));
                }
            };
            let permissions = Permissions {
                subscribe: token.subscribe.clone(),
                publish: token.publish.clone(),
                user: None,
            };
            tokens.push((value.into_bytes(), permissions));
        }
        let jwt = config.jwt.as_ref().map(JwtVerifier::new).transpose()?;
        let anonymous = config.anonymous.as_ref().map(|a| Permissions {
            subscribe: a.subscribe.clone(),
            publish: a.publish.clone(),
            user: None,
        });
        Ok(Authenticator {
            enabled: config.is_enabled(),
            tokens,
            jwt,
            anonymous,
        })
    }

    /// Whether `[auth]` is configured, so that clients' bearer tokens are the gateway's.
    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// What the bearer of `token` may do. With auth not configured, everything.
    pub(crate) fn authenticate(&self, token: Option<&str>) -> Result<Permissions, AuthError> {
        if !self.enabled {
            return Ok(Permissions::allow_all());
        }
        let Some(token) = token else {
            return self.anonymous.clone().ok_or(AuthError::Missing);
        };
        // Compare against every static token in constant time, so timing tells nothing.
        let mut found = None;
        for (known, permissions) in &self.tokens {
            if constant_time_eq(known, token.as_bytes()) {
                found = Some(permissions);
            }
        }
        if let Some(permissions) = found {
            return Ok(permissions.clone());
        }
        match &self.jwt {
            Some(jwt) => jwt.verify(token),
            None => Err(AuthError::Invalid("unknown token".into())),
        }
    }

    /// The claims of `token` if `[auth.jwt]` verifies it (algorithm, signature, `exp`,
    /// `nbf`, `iss`, `aud`), for bridge routes that take their target from a claim.
    pub(crate) fn verified_jwt_claims(
        &self,
        token: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, AuthError> {
        match &self.jwt {
            Some(jwt) => jwt.verified_claims(token),
            None => Err(AuthError::Invalid("no [auth.jwt] to verify JWTs".into())),
        }
    }
}

impl JwtVerifier {
    fn new(config: &JwtConfig) -> Result<Self, ConfigError> {
        let (algorithm, key) = match config.algorithm {
            JwtAlgorithm::HS256 => {
                let secret = match (&config.secret, &config.secret_env) {
                    (Some(s), _) => s.clone(),
                    (None, Some(var)) => env_secret(var, "auth.jwt.secret_env")?,
                    (None, None) => {
                        return Err(ConfigError::new("auth.jwt.secret", "HS256 needs a secret"));
                    }
                };
                (
                    Algorithm::HS256,
                    DecodingKey::from_secret(secret.as_bytes()),
                )
            }
            JwtAlgorithm::RS256 => {
                let path = config.public_key_file.as_ref().ok_or_else(|| {
                    ConfigError::new("auth.jwt.public_key_file", "RS256 needs a PEM public key")
                })?;
                let pem = std::fs::read(path).map_err(|e| {
                    ConfigError::new(
                        "auth.jwt.public_key_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                let key = DecodingKey::from_rsa_pem(&pem).map_err(|e| {
                    ConfigError::new(
                        "auth.jwt.public_key_file",
                        format!("{} is not an RSA public key in PEM: {e}", path.display()),
                    )
                })?;
                (Algorithm::RS256, key)
            }
        };
        Ok(JwtVerifier {
            key,
            algorithm,
            leeway_secs: config.leeway.as_secs_f64(),
            require_exp: config.require_exp,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            default_subscribe: config.default_subscribe.clone(),
            default_publish: config.default_publish.clone(),
        })
    }

    fn verify(&self, token: &str) -> Result<Permissions, AuthError> {
        let invalid = |why: String| AuthError::Invalid(why);
        let payload = self.verified_payload(token)?;
        let claims: Claims =
            serde_json::from_slice(&payload).map_err(|e| invalid(format!("bad claims: {e}")))?;
        self.check_registered_claims(&claims)?;
        self.permissions(claims)
    }

    /// The decoded payload of `token` once its algorithm and signature check out.
    fn verified_payload(&self, token: &str) -> Result<Vec<u8>, AuthError> {
        let invalid = |why: String| AuthError::Invalid(why);
        // An `alg` jsonwebtoken does not know, `none` included, fails here.
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            tracing::debug!("JWT header refused: {e}");
            invalid(match named_algorithm(token) {
                Some(alg) => format!("JWT algorithm {alg:?} is not accepted"),
                None => "bad JWT header".to_string(),
            })
        })?;
        // Only the configured algorithm passes: a token naming another one (such as HS256
        // "signed" with the RSA public key as the secret) is refused.
        if header.alg != self.algorithm {
            return Err(invalid(format!(
                "algorithm {:?} is not the configured {:?}",
                header.alg, self.algorithm
            )));
        }
        let (message, signature) = token
            .rsplit_once('.')
            .ok_or_else(|| invalid("not a JWT".into()))?;
        let verified =
            jsonwebtoken::crypto::verify(signature, message.as_bytes(), &self.key, self.algorithm)
                .map_err(|e| invalid(format!("bad signature: {e}")))?;
        if !verified {
            return Err(invalid("bad signature".into()));
        }
        message
            .split_once('.')
            .and_then(|(_, p)| URL_SAFE_NO_PAD.decode(p).ok())
            .ok_or_else(|| invalid("the payload is not base64url".into()))
    }

    /// The claims of a token whose signature and registered claims check out.
    fn verified_claims(
        &self,
        token: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, AuthError> {
        let payload = self.verified_payload(token)?;
        let claims: Claims = serde_json::from_slice(&payload)
            .map_err(|e| AuthError::Invalid(format!("bad claims: {e}")))?;
        self.check_registered_claims(&claims)?;
        serde_json::from_slice(&payload).map_err(|e| AuthError::Invalid(format!("bad claims: {e}")))
    }

    fn permissions(&self, claims: Claims) -> Result<Permissions, AuthError> {
        let invalid = |why: String| AuthError::Invalid(why);
        let user = match &claims.sub {
            Some(serde_json::Value::String(subject)) => Some(subject.clone()),
            _ => None,
        };
        let subscribe = match claims.sub {
            Some(serde_json::Value::Array(items)) => items
                .into_iter()
                .map(|item| match item {
                    serde_json::Value::String(s) => Ok(s),
                    _ => Err(invalid(
                        "claim `sub` must be a string or an array of strings".into(),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(serde_json::Value::String(_)) | None => self.default_subscribe.clone(),
            Some(_) => {
                return Err(invalid(
                    "claim `sub` must be a string or an array of strings".into(),
                ));
            }
        };
        Ok(Permissions {
            subscribe,
            publish: claims
                .publish
                .unwrap_or_else(|| self.default_publish.clone()),
            user,
        })
    }

    /// `exp`, `nbf` (with the leeway), `iss` and `aud` (RFC 7519 §4.1).
    fn check_registered_claims(&self, claims: &Claims) -> Result<(), AuthError> {
        let invalid = |why: &str| Err(AuthError::Invalid(why.to_string()));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        match claims.exp {
            // RFC 7519 §4.1.4: "the current date/time MUST be before the expiration date/time".
            Some(exp) if now >= exp + self.leeway_secs => return invalid("the token has expired"),
            None if self.require_exp => return invalid("the token has no `exp` claim"),
            _ => {}
        }
        // RFC 7519 §4.1.5: "the current date/time MUST be after or equal to the not-before".
        if claims.nbf.is_some_and(|nbf| now + self.leeway_secs < nbf) {
            return invalid("the token is not valid yet (`nbf`)");
        }
        if let Some(issuer) = &self.issuer
            && claims.iss.as_ref() != Some(issuer)
        {
            return invalid("the token's `iss` is not the configured issuer");
        }
        if let Some(audience) = &self.audience {
            let ok = match &claims.aud {
                Some(OneOrMany::One(a)) => a == audience,
                Some(OneOrMany::Many(list)) => list.contains(audience),
                None => false,
            };
            if !ok {
                return invalid("the token's `aud` does not name this service");
            }
        }
        Ok(())
    }
}

fn env_secret(var: &str, key: &str) -> Result<String, ConfigError> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Ok(value),
        _ => Err(ConfigError::new(
            key,
            format!("environment variable {var} is not set"),
        )),
    }
}

/// Equality whose running time depends only on the lengths.
/// The `alg` a JWT's header names, if it is readable JSON with a short string there (for
/// a refusal that says which algorithm, without echoing anything long).
fn named_algorithm(token: &str) -> Option<String> {
    let header = URL_SAFE_NO_PAD.decode(token.split('.').next()?).ok()?;
    let header: serde_json::Value = serde_json::from_slice(&header).ok()?;
    let alg = header.get("alg")?.as_str()?;
    (alg.len() <= 16 && alg.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| alg.to_string())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

use super::*;
use crate::config::{AnonymousConfig, TokenConfig};

const SECRET: &str = "an HS256 secret of at least thirty-two bytes";
const RSA_PRIVATE: &str = include_str!("../../tests/fixtures/jwt-rsa-private.pem");
const RSA_PUBLIC_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/jwt-rsa-public.pem"
);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(config: impl FnOnce(&mut JwtConfig)) -> Authenticator {
    let mut jwt = JwtConfig {
        algorithm: JwtAlgorithm::HS256,
        secret: Some(SECRET.into()),
        secret_env: None,
        public_key_file: None,
        issuer: None,
        audience: None,
        leeway: Duration::from_secs(0),
        require_exp: true,
        default_subscribe: vec!["public.*".into()],
        default_publish: vec![],
    };
    config(&mut jwt);
    Authenticator::new(&AuthConfig {
        jwt: Some(jwt),
        ..AuthConfig::default()
    })
    .unwrap()
}

fn sign_hs256(claims: serde_json::Value) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[test]
fn no_auth_configured_allows_everything() {
    let auth = Authenticator::new(&AuthConfig::default()).unwrap();
    let p = auth.authenticate(None).unwrap();
    assert!(p.can_publish("any.topic") && p.can_subscribe("*"));
}

#[test]
fn static_tokens_map_to_their_permissions() {
    let auth = Authenticator::new(&AuthConfig {
        tokens: vec![TokenConfig {
            token: Some("reader-token".into()),
            subscribe: vec!["stocks.*".into()],
            ..TokenConfig::default()
        }],
        ..AuthConfig::default()
    })
    .unwrap();
    let p = auth.authenticate(Some("reader-token")).unwrap();
    assert!(p.can_subscribe("stocks.ACME"));
    assert!(!p.can_publish("stocks.ACME"));
    assert_eq!(auth.authenticate(None).unwrap_err(), AuthError::Missing);
    assert!(matches!(
        auth.authenticate(Some("reader-tokeN")),
        Err(AuthError::Invalid(_))
    ));
}

#[test]
fn anonymous_permissions_apply_without_a_token_only() {
    let auth = Authenticator::new(&AuthConfig {
        anonymous: Some(AnonymousConfig {
            subscribe: vec!["scores.*".into()],
            publish: vec![],
        }),
        ..AuthConfig::default()
    })
    .unwrap();
    assert!(
        auth.authenticate(None)
            .unwrap()
            .can_subscribe("scores.final")
    );
    assert!(auth.authenticate(Some("made-up")).is_err());
}

#[test]
fn hs256_claims_carry_permissions() {
    let auth = hs256(|_| {});
    let token = sign_hs256(json!({"exp": now() + 60, "sub": ["a.*"], "pub": ["a.b"]}));
    let p = auth.authenticate(Some(&token)).unwrap();
    assert!(p.can_subscribe("a.x") && p.can_publish("a.b") && !p.can_publish("a.c"));
    assert_eq!(p.user, None);
    // RFC 7519 `sub` as a subject string: the defaults apply, and it names the user.
    let token = sign_hs256(json!({"exp": now() + 60, "sub": "user-42"}));
    let p = auth.authenticate(Some(&token)).unwrap();
    assert!(p.can_subscribe("public.news") && !p.can_subscribe("a.x"));
    assert_eq!(p.user.as_deref(), Some("user-42"));
}

#[test]
fn hs256_refuses_expired_early_unsigned_and_wrongly_signed_tokens() {
    let auth = hs256(|_| {});
    let expired = sign_hs256(json!({"exp": now() - 10}));
    let early = sign_hs256(json!({"exp": now() + 60, "nbf": now() + 30}));
    let no_exp = sign_hs256(json!({"sub": ["*"]}));
    let wrong_key = encode(
        &Header::default(),
        &json!({"exp": now() + 60}),
        &EncodingKey::from_secret(b"another secret of thirty-two bytes or more"),
    )
    .unwrap();
    for token in [expired, early, no_exp, wrong_key] {
        assert!(
            matches!(auth.authenticate(Some(&token)), Err(AuthError::Invalid(_))),
            "{token}"
        );
    }
}

/// base64url without padding (RFC 4648 §5), as JWTs use it.
fn b64(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn base64url_matches_rfc_4648_vectors() {
    assert_eq!(b64(b"f"), "Zg");
    assert_eq!(b64(b"fo"), "Zm8");
    assert_eq!(b64(b"foo"), "Zm9v");
    assert_eq!(b64(b"foob"), "Zm9vYg");
}

#[test]
fn alg_none_is_refused() {
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(format!(r#"{{"exp":{},"sub":["*"],"pub":["*"]}}"#, now() + 60).as_bytes());
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        assert_eq!(
            hs256(|_| {}).authenticate(Some(&token)),
            Err(AuthError::Invalid(
                "JWT algorithm \"none\" is not accepted".into()
            ))
        );
    }
    // A header that is not JSON, or names something long, is not echoed back.
    for header in [
        b64(b"not json"),
        b64(format!(r#"{{"alg":"{}"}}"#, "x".repeat(40)).as_bytes()),
    ] {
        assert_eq!(
            hs256(|_| {}).authenticate(Some(&format!("{header}.{payload}."))),
            Err(AuthError::Invalid("bad JWT header".into()))
        );
    }
}

#[test]
fn issuer_and_audience_are_required_when_configured() {
    let auth = hs256(|j| {
        j.issuer = Some("https://issuer.example".into());
        j.audience = Some("tether".into());
    });
    let good =
        sign_hs256(json!({"exp": now() + 60, "iss": "https://issuer.example", "aud": "tether"}));
    let no_aud = sign_hs256(json!({"exp": now() + 60, "iss": "https://issuer.example"}));
    let other_iss =
        sign_hs256(json!({"exp": now() + 60, "iss": "https://evil.example", "aud": "tether"}));
    assert!(auth.authenticate(Some(&good)).is_ok());
    assert!(auth.authenticate(Some(&no_aud)).is_err());
    assert!(auth.authenticate(Some(&other_iss)).is_err());
}

#[test]
fn rs256_accepts_its_key_and_refuses_algorithm_confusion() {
    let auth = Authenticator::new(&AuthConfig {
        jwt: Some(JwtConfig {
            algorithm: JwtAlgorithm::RS256,
            secret: None,
            secret_env: None,
            public_key_file: Some(RSA_PUBLIC_PATH.into()),
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(0),
            require_exp: true,
            default_subscribe: vec![],
            default_publish: vec![],
        }),
        ..AuthConfig::default()
    })
    .unwrap();
    let claims = json!({"exp": now() + 60, "sub": ["x.*"]});
    let token = encode(
        &Header::new(Algorithm::RS256),
        &claims,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap();
    assert!(
        auth.authenticate(Some(&token))
            .unwrap()
            .can_subscribe("x.y")
    );
    // HS256 "signed" with the public key as the secret: the classic confusion attack.
    let public = std::fs::read(RSA_PUBLIC_PATH).unwrap();
    let forged = encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(&public),
    )
    .unwrap();
    assert!(auth.authenticate(Some(&forged)).is_err());
}

#[test]
fn a_missing_key_file_names_the_key() {
    let err = Authenticator::new(&AuthConfig {
        jwt: Some(JwtConfig {
            algorithm: JwtAlgorithm::RS256,
            secret: None,
            secret_env: None,
            public_key_file: Some("/nonexistent/key.pem".into()),
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(0),
            require_exp: true,
            default_subscribe: vec![],
            default_publish: vec![],
        }),
        ..AuthConfig::default()
    })
    .err()
    .unwrap();
    assert_eq!(err.key, "auth.jwt.public_key_file");
}

#[test]
fn constant_time_eq_is_eq() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
}

//! Exit statuses of the client commands, and error messages that say what went wrong and
//! what to try.

use std::process::ExitCode;

use rustls::CertificateError;
use tether::{CloseFrame, Error};

/// How a client command ended (the table is in `tether connect --help`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Normal close.
    Normal = 0,
    /// Anything else (local errors).
    Other = 1,
    /// Bad command line.
    Usage = 2,
    /// Closed by the server with a code other than 1000 or 1001.
    CloseCode = 3,
    /// Closed without a closing handshake, or the peer broke the protocol.
    Abnormal = 4,
    /// The handshake was refused.
    Refused = 5,
    /// DNS or TCP connect failed.
    Connect = 6,
    /// TLS failed.
    Tls = 7,
    /// A pub/sub request was refused.
    RequestRefused = 8,
}

impl From<Status> for ExitCode {
    fn from(status: Status) -> ExitCode {
        ExitCode::from(status as u8)
    }
}

/// A command's failure: its exit status and what to tell the user.
#[derive(Debug)]
pub struct Failure {
    /// The exit status.
    pub status: Status,
    /// The message, without the `tether: ` prefix; may span several lines.
    pub message: String,
    /// For a refused handshake: the HTTP status the server answered with.
    pub http_status: Option<u16>,
}

impl Failure {
    /// A failure with `status`.
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
            http_status: None,
        }
    }

    /// A bad argument value found after parsing (exit 1: clap's 2 is for syntax).
    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new(Status::Other, message)
    }

    /// Prints the message and gives the exit code.
    pub fn report(self) -> ExitCode {
        eprintln!("tether: {}", self.message);
        self.status.into()
    }

    /// The failure for an error while connecting to `url` (or on the connection).
    pub fn from_error(e: &Error, url: &str) -> Self {
        match e {
            Error::Resolve { host, source } => Failure::new(
                Status::Connect,
                format!(
                    "cannot resolve host {host:?} ({url}): {source}\n  try: check the host name in the URL"
                ),
            ),
            Error::Connect { .. } => Failure::new(
                Status::Connect,
                format!("{e}\n  try: check that the server runs and listens on that port"),
            ),
            Error::Tls(tls) => Failure::new(Status::Tls, describe_tls(tls, url)),
            Error::HandshakeRefused(refused) => {
                let mut message = format!(
                    "the server refused the WebSocket handshake for {url}: {} {}",
                    refused.status, refused.reason
                );
                let body = refused.body_text();
                if !body.is_empty() {
                    message.push_str("\n  server said: ");
                    message.push_str(&body.replace('\n', "\n    "));
                    if refused.body_truncated {
                        message.push_str(" [...]");
                    }
                }
                if let Some(hint) = refused_hint(refused.status) {
                    message.push_str("\n  try: ");
                    message.push_str(hint);
                }
                Failure {
                    http_status: Some(refused.status),
                    ..Failure::new(Status::Refused, message)
                }
            }
            Error::ClientHandshake(why) => Failure::new(
                Status::Refused,
                format!(
                    "{url} is not a WebSocket endpoint: {why}\n  try: -v to see the server's response"
                ),
            ),
            Error::Url(why) => Failure::usage(format!("bad URL: {why}")),
            Error::AbnormalClosure => Failure::new(
                Status::Abnormal,
                "the connection closed without a closing handshake (1006)",
            ),
            Error::IdleTimeout => Failure::new(
                Status::Abnormal,
                "the server did not answer pings in time (--ping-interval); connection given up",
            ),
            Error::Protocol(why) => Failure::new(
                Status::Abnormal,
                format!("the server broke the WebSocket protocol: {why}"),
            ),
            Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => Failure::new(
                Status::Abnormal,
                format!("{url}: the server closed the connection during the handshake"),
            ),
            Error::Io(io) => Failure::new(Status::Abnormal, format!("{url}: {io}")),
            other => Failure::new(Status::Other, format!("{url}: {other}")),
        }
    }

    /// The failure (or success) for a connection the server closed with `frame`.
    pub fn from_close(frame: Option<&CloseFrame>, we_closed: bool) -> Option<Self> {
        let frame = frame?;
        if we_closed || matches!(frame.code.0, 1000 | 1001) {
            return None;
        }
        let reason = if frame.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", frame.reason.as_str())
        };
        Some(Failure::new(
            Status::CloseCode,
            format!(
                "the server closed the connection with {}{reason}",
                frame.code.0
            ),
        ))
    }
}

fn refused_hint(status: u16) -> Option<&'static str> {
    Some(match status {
        400 => {
            "the server refused the request as sent (what it said is above; -v shows the request)"
        }
        401 => "this endpoint needs credentials: --token TOKEN or -H 'Authorization: ...'",
        403 => "check --origin (servers refuse unknown browser origins) and --token",
        404 => "check the path in the URL",
        426 => "the server wants another WebSocket version or protocol",
        429 | 503 => "the server is busy or limits connections; try again later",
        301 | 302 | 307 | 308 => "the endpoint moved: see the Location header with -v",
        _ => return None,
    })
}

/// Which TLS check failed, in words, with what to try.
fn describe_tls(e: &rustls::Error, url: &str) -> String {
    let what = match e {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => "the server's certificate is not signed by a trusted authority (self-signed or a private CA)\n  try: --ca FILE with the CA's certificate, or --insecure for a test server".to_string(),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => format!("the server's certificate is not valid for the host in {url}: {e}\n  try: connect with a name the certificate lists, or --insecure for a test server"),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => format!("the server's certificate has expired: {e}"),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => format!("the server's certificate is not valid yet (check the clock): {e}"),
            CertificateError::Revoked => "the server's certificate was revoked".to_string(),
            CertificateError::BadSignature => "the server's certificate has a bad signature".to_string(),
            other => format!("the server's certificate was refused: {other:?}"),
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => format!(
            "the server did not answer with TLS ({e})\n  try: ws:// instead of wss:// if the server speaks plain WebSocket"
        ),
        rustls::Error::AlertReceived(alert) => format!("the server ended the TLS handshake with alert {alert:?}"),
        other => format!("TLS handshake failed: {other}"),
    };
    format!("TLS with {url} failed: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether::CloseCode;

    #[test]
    fn close_codes_map_to_statuses() {
        let normal = CloseFrame::new(CloseCode::NORMAL, "");
        let policy = CloseFrame::new(CloseCode(1008), "slow consumer");
        assert!(Failure::from_close(Some(&normal), false).is_none());
        assert!(Failure::from_close(None, false).is_none());
        assert!(Failure::from_close(Some(&policy), true).is_none());
        let failure = Failure::from_close(Some(&policy), false).unwrap();
        assert_eq!(failure.status, Status::CloseCode);
        assert!(
            failure.message.contains("1008: slow consumer"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn dns_and_connect_failures_name_the_host_and_addresses() {
        let e = Error::Resolve {
            host: "nowhere.invalid".into(),
            source: std::io::Error::other("Name or service not known"),
        };
        let failure = Failure::from_error(&e, "ws://nowhere.invalid/");
        assert_eq!(failure.status, Status::Connect);
        assert!(
            failure
                .message
                .starts_with("cannot resolve host \"nowhere.invalid\" (ws://nowhere.invalid/): Name or service not known"),
            "{}",
            failure.message
        );
        let e = Error::Connect {
            host: "localhost".into(),
            port: 9,
            tried: vec!["[::1]:9".parse().unwrap(), "127.0.0.1:9".parse().unwrap()],
            source: std::io::ErrorKind::ConnectionRefused.into(),
        };
        let failure = Failure::from_error(&e, "ws://localhost:9/");
        assert_eq!(failure.status, Status::Connect);
        assert!(
            failure
                .message
                .starts_with("cannot connect to localhost:9 (tried [::1]:9, 127.0.0.1:9): "),
            "{}",
            failure.message
        );
    }

    #[test]
    fn tls_failures_name_the_check() {
        let e = Error::Tls(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        let failure = Failure::from_error(&e, "wss://localhost:1/");
        assert_eq!(failure.status, Status::Tls);
        assert!(
            failure
                .message
                .contains("not signed by a trusted authority")
        );
        assert!(failure.message.contains("--ca FILE"));
    }
}

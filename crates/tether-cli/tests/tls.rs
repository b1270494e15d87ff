//! `tether connect` over wss to `tether serve` with a self-signed certificate made here:
//! the TLS error names the check that failed, `--ca FILE` trusts the certificate (and the
//! name is still checked), `--insecure` skips the check.
#![cfg(unix)]

mod support;

use support::{Serve, run, scratch_file};

fn serve_tls() -> (Serve, std::net::SocketAddr, std::path::PathBuf) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = scratch_file("tls-cert.pem", &certified.cert.pem());
    let key = scratch_file("tls-key.pem", &certified.signing_key.serialize_pem());
    let (serve, tls) = Serve::start_with(
        None,
        &[
            "--tls-listen",
            "127.0.0.1:0",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    (serve, tls.unwrap(), cert)
}

#[test]
fn wss_errors_say_which_check_failed_and_ca_or_insecure_get_through() {
    let (_serve, tls, cert) = serve_tls();
    let by_name = format!("wss://localhost:{}/echo", tls.port());
    let by_ip = format!("wss://127.0.0.1:{}/echo", tls.port());

    let out = run(&["connect", &by_name], b"hi\n");
    assert_eq!(out.code(), 7, "{out:?}");
    assert!(
        out.stderr.contains("not signed by a trusted authority"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--ca FILE"), "{}", out.stderr);

    let ca = cert.to_str().unwrap();
    let out = run(&["connect", "--ca", ca, &by_name], b"over tls\n");
    assert_eq!(
        (out.code(), out.stdout.as_str()),
        (0, "over tls"),
        "{out:?}"
    );

    // Trusted, but issued for localhost, not 127.0.0.1.
    let out = run(&["connect", "--ca", ca, &by_ip], b"hi\n");
    assert_eq!(out.code(), 7, "{out:?}");
    assert!(
        out.stderr.contains("not valid for the host"),
        "{}",
        out.stderr
    );

    let out = run(&["connect", "--insecure", &by_ip], b"unchecked\n");
    assert_eq!(
        (out.code(), out.stdout.as_str()),
        (0, "unchecked"),
        "{out:?}"
    );

    let missing = format!("{ca}.missing");
    let out = run(&["connect", "--ca", &missing, &by_name], b"");
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(out.stderr.contains("--ca"), "{}", out.stderr);
}

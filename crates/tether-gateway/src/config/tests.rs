use super::*;

fn error(text: &str) -> ConfigError {
    GatewayConfig::from_toml(text).unwrap_err()
}

#[test]
fn empty_file_is_the_default() {
    assert_eq!(
        GatewayConfig::from_toml("").unwrap(),
        GatewayConfig::default()
    );
    assert_eq!(GatewayConfig::default().validate(), Ok(()));
}

#[test]
fn unknown_route_kind_names_the_key_and_the_choices() {
    let e = error(
        "[[routes]]\npath = \"/ws\"\nkind = \"pubsub\"\n\n[[routes]]\npath = \"/x\"\nkind = \"foo\"\n",
    );
    assert_eq!(e.key, "routes[1].kind");
    assert_eq!(
        e.problem,
        "unknown kind \"foo\", expected pubsub, echo, bridge or proxy"
    );
    assert_eq!(e.location, Some((7, 8)));
    assert_eq!(
        e.to_string(),
        "routes[1].kind: unknown kind \"foo\", expected pubsub, echo, bridge or proxy (line 7, column 8)"
    );
}

#[test]
fn unknown_keys_are_refused_with_their_path() {
    let e = error("[limits]\nmax_conections = 5\n");
    assert_eq!(e.key, "limits.max_conections");
    assert!(e.problem.contains("unknown field `max_conections`"), "{e}");
    assert!(e.problem.contains("max_connections"), "{e}");
    let e = error("lisen = \"0.0.0.0:80\"\n");
    assert_eq!(e.key, "lisen");
}

#[test]
fn wrong_types_and_units_name_the_key() {
    let e = error("[limits]\nidle_timeout = \"10 parsecs\"\n");
    assert_eq!(e.key, "limits.idle_timeout");
    assert!(e.problem.contains("unknown unit"), "{e}");
    let e = error("demo = \"yes\"\n");
    assert_eq!(e.key, "demo");
    let e = error("[limits]\nmax_message_size = -1\n");
    assert_eq!(e.key, "limits.max_message_size");
}

#[test]
fn validation_errors_name_the_key() {
    assert_eq!(
        error("[limits]\nmax_connections = 0\n").key,
        "limits.max_connections"
    );
    assert_eq!(
        error("[limits]\nmax_frame_size = 0\n").key,
        "limits.max_frame_size"
    );
    let e = error(
        "[[routes]]\npath = \"/a\"\nkind = \"echo\"\n[[routes]]\npath = \"/a\"\nkind = \"pubsub\"\n",
    );
    assert_eq!(e.key, "routes[1].path");
    assert!(e.problem.contains("routes[0]"), "{e}");
    assert_eq!(
        error("allowed_origins = [\"example.com\"]\n").key,
        "allowed_origins"
    );
    assert_eq!(
        error("[[routes]]\npath = \"/metrics\"\nkind = \"echo\"\n").key,
        "routes[0].path"
    );
    assert_eq!(
        error("[[auth.tokens]]\ntoken = \"0123456789\"\nsubscribe = [\"a*\"]\n").key,
        "auth.tokens[0].subscribe"
    );
    assert_eq!(
        error("[static]\nindex = \"../x.html\"\n").key,
        "static.index"
    );
    let e = error("[[hub.topics]]\npattern = \"a*b\"\n");
    assert_eq!(e.key, "hub.topics[0].pattern");
    assert!(!e.problem.starts_with("hub"), "{e}");
}

#[test]
fn broken_toml_says_where() {
    let e = error("listen = \n");
    assert_eq!(e.key, "");
    assert!(e.problem.starts_with("invalid TOML"), "{e}");
    assert_eq!(e.location.map(|l| l.0), Some(1));
    let e = error("demo = true\ndemo = false\n");
    assert!(e.to_string().contains("duplicate key at `demo`"), "{e}");
}

#[test]
fn routes_replace_the_defaults() {
    let config = GatewayConfig::from_toml("[[routes]]\npath = \"/\"\nkind = \"echo\"\n").unwrap();
    assert_eq!(config.routes, vec![RouteConfig::new("/", RouteKind::Echo)]);
}

#[test]
fn tls_only_needs_no_plain_address() {
    let config = GatewayConfig::from_toml(
        "listen = \"\"\n[tls]\nlisten = \"127.0.0.1:0\"\ncert = \"c.pem\"\nkey = \"k.pem\"\nonly = true\n",
    )
    .unwrap();
    assert!(config.tls.unwrap().only);
    assert_eq!(error("listen = \" \"\n").key, "listen");
}

#[test]
fn relative_paths_follow_the_config_file() {
    let mut config = GatewayConfig::from_toml(
        "[static]\nroot = \"public\"\n[tls]\nlisten = \"127.0.0.1:0\"\ncert = \"/abs/c.pem\"\nkey = \"k.pem\"\n",
    )
    .unwrap();
    config.resolve_paths(Path::new("/etc/tether"));
    assert_eq!(
        config.static_files.root,
        Some(PathBuf::from("/etc/tether/public"))
    );
    let tls = config.tls.unwrap();
    assert_eq!(tls.cert, PathBuf::from("/abs/c.pem"));
    assert_eq!(tls.key, PathBuf::from("/etc/tether/k.pem"));
}

#[test]
fn the_example_file_is_valid_and_documents_the_defaults() {
    let text = include_str!("../../../../tether.example.toml");
    // Every value the example spells out is the default.
    assert_eq!(
        GatewayConfig::from_toml(text).unwrap(),
        GatewayConfig::default()
    );
}

#[test]
fn a_missing_file_is_named() {
    let e = GatewayConfig::load(Path::new("/nonexistent/tether.toml")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/tether.toml"), "{e}");
}

#[test]
fn overrides_win_and_tls_flags_go_together() {
    let mut config = GatewayConfig::default();
    Overrides {
        listen: Some("0.0.0.0:9000".into()),
        no_demo: true,
        ..Overrides::default()
    }
    .apply(&mut config)
    .unwrap();
    assert_eq!(config.listen, "0.0.0.0:9000");
    assert!(!config.demo);

    let e = Overrides {
        cert: Some("c.pem".into()),
        ..Overrides::default()
    }
    .apply(&mut config)
    .unwrap_err();
    assert_eq!(e.key, "tls");
    let e = Overrides {
        tls_only: true,
        ..Overrides::default()
    }
    .apply(&mut config)
    .unwrap_err();
    assert_eq!(e.key, "tls.only");

    Overrides {
        tls_listen: Some("127.0.0.1:8443".into()),
        cert: Some("c.pem".into()),
        key: Some("k.pem".into()),
        tls_only: true,
        ..Overrides::default()
    }
    .apply(&mut config)
    .unwrap();
    let tls = config.tls.clone().unwrap();
    assert!(tls.only);
    // With [tls] present, one flag replaces one key.
    Overrides {
        key: Some("other.pem".into()),
        ..Overrides::default()
    }
    .apply(&mut config)
    .unwrap();
    assert_eq!(config.tls.unwrap().key, PathBuf::from("other.pem"));
}

//! File parsing and validation: defaults, the example file, and errors that name key and line.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::*;

/// Writes `text` as a config file in `dir` and runs `check_file` on it.
fn check(dir: &Path, text: &str) -> Result<Settings, SettingsError> {
    let path = dir.join("fiberlb.toml");
    std::fs::write(&path, text).unwrap();
    check_file(&path)
}

fn check_err(text: &str) -> SettingsError {
    let dir = tempfile::tempdir().unwrap();
    check(dir.path(), text).expect_err("config should be rejected")
}

/// Asserts an `Invalid` error for `key` located at `line` of the file.
fn assert_invalid_at(err: &SettingsError, key: &str, line: usize) {
    match err {
        SettingsError::Invalid {
            key: k,
            origin: Origin::File { line: l, .. },
            ..
        } => {
            assert_eq!(k, key, "{err}");
            assert_eq!(*l, Some(line), "{err}");
        }
        other => panic!("expected invalid `{key}` at line {line}, got {other:?}"),
    }
    assert!(err.to_string().contains(key), "{err}");
    assert!(err.to_string().contains(&format!("line {line}")), "{err}");
}

fn assert_parse_at(err: &SettingsError, key: &str, line: usize) {
    assert!(matches!(err, SettingsError::Parse { .. }), "{err:?}");
    assert_eq!(err.key(), Some(key), "{err}");
    assert_eq!(err.line(), Some(line), "{err}");
    let shown = err.to_string();
    assert!(
        shown.contains(key) && shown.contains(&format!("line {line}")),
        "{shown}"
    );
}

#[test]
fn defaults_are_valid_and_documented_values() {
    let s = Settings::default();
    s.validate().unwrap();
    assert_eq!(
        s.server.grpc_addr,
        "127.0.0.1:6300".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        s.server.metrics_addr,
        "127.0.0.1:9090".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(s.storage.backend, StorageBackend::Embedded);
    assert_eq!(s.storage.data_dir, PathBuf::from("./fiberlb-data"));
    assert_eq!(s.logging.level, "info");
    assert_eq!(s.logging.format, LogFormat::Text);
    assert!(s.cluster.gossip_addr.is_none() && !s.bgp.enabled);
    assert_eq!(s.cluster.probe_replicas, 2);
    assert_eq!(s.proxy.drain_grace_seconds, 30);
    assert!(!s.cluster.node_id.is_empty());
    // An empty file is the defaults.
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(check(dir.path(), "").unwrap(), s);
}

/// Points every file-valued key of the example at a real temporary file.
fn with_real_files(mut s: Settings, dir: &Path) -> Settings {
    let file = |name: &str| {
        let p = dir.join(name);
        std::fs::write(&p, "secret\n").unwrap();
        Some(p)
    };
    s.server.tls.cert_file = file("cert");
    s.server.tls.key_file = file("key");
    s.server.tls.ca_file = file("ca");
    s.storage.chainfire_password_file = file("pw");
    s.storage.chainfire_ca_file = file("cfca");
    s.iam.token_path = file("token");
    s.admin.bootstrap_token_file = file("bootstrap");
    s.cluster.key_file = file("cluster.key");
    s.cluster.previous_key_file = file("cluster.key.previous");
    s
}

fn toml_keys(text: &str) -> BTreeSet<String> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut BTreeSet<String>) {
        for (k, v) in table {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(t) => walk(&path, t, out),
                toml::Value::Array(items) => {
                    for item in items {
                        if let toml::Value::Table(t) = item {
                            walk(&format!("{path}[]"), t, out);
                        }
                    }
                }
                _ => {}
            }
            out.insert(path);
        }
    }
    let mut out = BTreeSet::new();
    walk("", &text.parse::<toml::Table>().unwrap(), &mut out);
    out
}

#[test]
fn example_file_has_every_key_and_is_valid() {
    let (s, _) = load::parse_file_text(Path::new("example.toml"), EXAMPLE_TOML).unwrap();
    // Every optional key is present (a new field breaks this destructuring on purpose).
    let Settings {
        server,
        storage,
        proxy,
        iam,
        plasmavmc,
        flashdns,
        admin,
        cluster,
        bgp,
        ..
    } = &s;
    let ServerTlsSettings {
        cert_file,
        key_file,
        ca_file,
    } = &server.tls;
    assert!(cert_file.is_some() && key_file.is_some() && ca_file.is_some());
    let StorageSettings {
        chainfire_endpoints,
        chainfire_username,
        chainfire_password_file,
        chainfire_ca_file,
        ..
    } = storage;
    assert!(!chainfire_endpoints.is_empty() && chainfire_username.is_some());
    assert!(chainfire_password_file.is_some() && chainfire_ca_file.is_some());
    assert!(proxy.bind_address.is_some());
    assert!(iam.endpoint.is_some() && iam.token_path.is_some() && plasmavmc.endpoint.is_some());
    assert!(flashdns.endpoint.is_some() && flashdns.dns_addr.is_some());
    assert!(admin.bootstrap_token_file.is_some());
    let ClusterSettings {
        gossip_addr,
        advertise_addr,
        peers,
        key_file,
        previous_key_file,
        vip_pool,
        ..
    } = cluster;
    assert!(gossip_addr.is_some() && advertise_addr.is_some() && !peers.is_empty());
    assert!(key_file.is_some() && previous_key_file.is_some() && vip_pool.is_some());
    let BgpSettings {
        router_id,
        listen,
        next_hop,
        communities,
        peers,
        ..
    } = bgp;
    assert!(router_id.is_some() && listen.is_some() && next_hop.is_some());
    assert!(!communities.is_empty() && peers.iter().any(|p| p.password.is_some()));
    // ...and so is every key the settings have (non-optional ones included).
    let example_keys = toml_keys(EXAMPLE_TOML);
    let all_keys = toml_keys(&s.to_toml());
    let missing: Vec<_> = all_keys.difference(&example_keys).collect();
    assert!(missing.is_empty(), "example.toml lacks {missing:?}");
    // Every value is valid once the files it names exist.
    let dir = tempfile::tempdir().unwrap();
    with_real_files(s, dir.path()).validate().unwrap();
}

#[test]
fn to_toml_round_trips_and_hides_passwords() {
    let (s, _) = load::parse_file_text(Path::new("example.toml"), EXAMPLE_TOML).unwrap();
    let shown = s.to_toml();
    assert!(!shown.contains("change-me"), "{shown}");
    let (back, _) = load::parse_file_text(Path::new("shown.toml"), &shown).unwrap();
    let mut expected = s.clone();
    for p in &mut expected.bgp.peers {
        p.password = Some("********".into());
    }
    assert_eq!(back, expected);
    let defaults = Settings::default();
    let (back, _) = load::parse_file_text(Path::new("d.toml"), &defaults.to_toml()).unwrap();
    assert_eq!(back, defaults);
}

#[test]
fn unknown_key_names_key_and_line() {
    let err = check_err("[proxy]\ntcp_nodelay = true\nbogus_key = 1\n");
    assert_parse_at(&err, "proxy.bogus_key", 3);
    let err = check_err("# top\n\n[no_such_section]\nx = 1\n");
    assert_parse_at(&err, "no_such_section", 3);
    let err = check_err("[[bgp.peers]]\naddress = \"10.0.0.1\"\nasn = 1\nmd5 = \"x\"\n");
    assert_parse_at(&err, "bgp.peers[0].md5", 4);
}

#[test]
fn wrong_type_names_key_and_line() {
    let err = check_err("[proxy]\n\ntcp_nodelay = \"yes\"\n");
    assert_parse_at(&err, "proxy.tcp_nodelay", 3);
    assert!(err.to_string().contains("boolean"), "{err}");
    let err = check_err("[[bgp.peers]]\naddress = \"10.0.0.1\"\nasn = 1\nport = 70000\n");
    assert_parse_at(&err, "bgp.peers[0].port", 4);
    let err = check_err("[storage]\nbackend = \"sqlite\"\n");
    assert_parse_at(&err, "storage.backend", 2);
}

#[test]
fn bad_address_names_key_and_line() {
    let err = check_err("[server]\ngrpc_addr = \"localhost\"\n");
    assert_parse_at(&err, "server.grpc_addr", 2);
    let err = check_err("[proxy]\nbind_address = \"10.0.0.300\"\n");
    assert_parse_at(&err, "proxy.bind_address", 2);
}

#[test]
fn clashing_addresses_are_rejected() {
    let err =
        check_err("[server]\ngrpc_addr = \"0.0.0.0:7000\"\nmetrics_addr = \"127.0.0.1:7000\"\n");
    assert_invalid_at(&err, "server.metrics_addr", 3);
}

#[test]
fn bad_cidr_in_vip_pool() {
    let err = check_err("[cluster]\nvip_pool = \"10.200.0.0/33\"\n");
    assert_invalid_at(&err, "cluster.vip_pool", 2);
    let err = check_err("[cluster]\n\nvip_pool = \"10.200.0.7/24\"\n");
    assert_invalid_at(&err, "cluster.vip_pool", 3);
    assert!(err.to_string().contains("10.200.0.0/24"), "{err}");
}

#[test]
fn missing_key_file_names_key_line_and_path() {
    let err = check_err(
        "[cluster]\ngossip_addr = \"127.0.0.1:0\"\nkey_file = \"/nonexistent/cluster.key\"\n",
    );
    assert_invalid_at(&err, "cluster.key_file", 3);
    assert!(
        err.to_string().contains("/nonexistent/cluster.key"),
        "{err}"
    );
    // Gossip without a key at all is refused too (gossip is always authenticated).
    let err = check_err("[cluster]\ngossip_addr = \"127.0.0.1:0\"\n");
    assert_invalid_at(&err, "cluster.key_file", 1);
}

#[test]
fn gossip_with_key_file_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, "0123456789abcdef").unwrap();
    let text = format!(
        "[cluster]\ngossip_addr = \"127.0.0.1:0\"\nkey_file = {:?}\npeers = [\"127.0.0.2:7946\"]\n",
        key.display().to_string()
    );
    let s = check(dir.path(), &text).unwrap();
    assert_eq!(s.cluster.key_file, Some(key));
    let err = check_err("[cluster]\npeers = [\"127.0.0.2:7946\"]\n");
    assert_invalid_at(&err, "cluster.peers", 2);
}

#[test]
fn previous_key_file_must_exist_and_needs_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, "0123456789abcdef").unwrap();
    let head = format!(
        "[cluster]\ngossip_addr = \"127.0.0.1:0\"\nkey_file = {:?}\n",
        key.display().to_string()
    );
    let err = check_err(&format!(
        "{head}previous_key_file = \"/nonexistent/old.key\"\n"
    ));
    assert_invalid_at(&err, "cluster.previous_key_file", 4);
    let text = format!(
        "{head}previous_key_file = {:?}\n",
        key.display().to_string()
    );
    let s = check(dir.path(), &text).unwrap();
    assert_eq!(s.cluster.previous_key_file, Some(key.clone()));
    let err = check_err(&format!(
        "[cluster]\nprevious_key_file = {:?}\n",
        key.display().to_string()
    ));
    assert_invalid_at(&err, "cluster.previous_key_file", 2);
}

#[test]
fn bgp_rules() {
    let peer = "[[bgp.peers]]\naddress = \"10.0.0.1\"\nasn = 65000\n";
    let err = check_err(&format!("{peer}hold_time = 1\n"));
    assert_invalid_at(&err, "bgp.peers[0].hold_time", 4);
    let err = check_err(&format!(
        "[bgp]\nenabled = true\nrouter_id = \"10.0.0.2\"\n{peer}"
    ));
    // No asn key in the file: the error points at the [bgp] table.
    assert_invalid_at(&err, "bgp.asn", 1);
    let err = check_err(&format!("[bgp]\nenabled = true\nasn = 65001\n{peer}"));
    assert_invalid_at(&err, "bgp.router_id", 1);
    let err = check_err("[bgp]\ncommunities = [\"65000:1\", \"65000-2\"]\n");
    assert_invalid_at(&err, "bgp.communities[1]", 2);
    let err = check_err(&format!("{peer}passive = true\n"));
    assert_invalid_at(&err, "bgp.peers[0].passive", 4);
    // A peer without its required address.
    let err = check_err("[[bgp.peers]]\nasn = 65000\n");
    assert_parse_at(&err, "bgp.peers[0]", 1);
    let dir = tempfile::tempdir().unwrap();
    let ok = format!("[bgp]\nenabled = true\nasn = 65001\nlisten = \"10.0.0.2:179\"\n{peer}");
    let s = check(dir.path(), &ok).unwrap();
    assert_eq!(
        s.bgp.effective_router_id(),
        Some("10.0.0.2".parse().unwrap())
    );
    assert_eq!(s.bgp.peers[0].port, 179);
    assert_eq!(s.bgp.peers[0].hold_time, 90);
}

#[test]
fn other_invalid_values_name_their_key() {
    let cases = [
        ("[logging]\nlevel = \"verbose\"\n", "logging.level", 2),
        (
            "[storage]\nbackend = \"chainfire\"\n",
            "storage.chainfire_endpoints",
            1,
        ),
        (
            "[storage]\nchainfire_endpoints = [\"ftp://x:1\"]\n",
            "storage.chainfire_endpoints[0]",
            2,
        ),
        ("[iam]\nendpoint = \"aegis:9090\"\n", "iam.endpoint", 2),
        (
            "[health_check]\ndefault_interval_seconds = 5\ndefault_timeout_seconds = 10\n",
            "health_check.default_timeout_seconds",
            3,
        ),
        (
            "[proxy]\nmax_header_size_bytes = 10\n",
            "proxy.max_header_size_bytes",
            2,
        ),
        ("[cluster]\nnode_id = \"-bad\"\n", "cluster.node_id", 2),
        (
            "[server.tls]\ncert_file = \"/nonexistent.crt\"\n",
            "server.tls.key_file",
            1,
        ),
        (
            "[admin]\nbootstrap_token_file = \"/nonexistent-token\"\n",
            "admin.bootstrap_token_file",
            2,
        ),
    ];
    for (text, key, line) in cases {
        assert_invalid_at(&check_err(text), key, line);
    }
}

#[test]
fn syntax_error_has_a_line() {
    let err = check_err("[server]\ngrpc_addr = \"127.0.0.1:1\"\n[proxy\n");
    assert!(matches!(err, SettingsError::Parse { .. }), "{err:?}");
    assert_eq!(err.line(), Some(3), "{err}");
}

#[test]
fn missing_config_file_is_a_read_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.toml");
    let err = check_file(&path).unwrap_err();
    assert!(matches!(err, SettingsError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("absent.toml"), "{err}");
}

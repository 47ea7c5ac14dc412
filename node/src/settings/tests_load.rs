//! Layering: file < environment < flags, and errors that name the variable or flag.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn write_config(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("node.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const FILE: &str = "[server]\ngrpc_addr = \"127.0.0.1:7001\"\nmetrics_addr = \"127.0.0.1:7101\"\n\
                    [logging]\nlevel = \"debug\"\nformat = \"json\"\n\
                    [cluster]\nnode_id = \"from-file\"\n\
                    [storage]\ndata_dir = \"/tmp/from-file\"\n";

#[test]
fn file_then_env_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, FILE);
    let args = ServeArgs {
        config: Some(path),
        grpc_addr: Some(addr("127.0.0.1:7003")),
        ..ServeArgs::default()
    };
    let vars = env(&[
        ("FIBERLB_GRPC_ADDR", "127.0.0.1:7002"),
        ("FIBERLB_NODE_ID", "from-env"),
        ("FIBERLB_LOG_FORMAT", "text"),
        ("FIBERLB_BIND_ADDRESS", "127.0.0.5"),
    ]);
    let s = load_with_env(&args, &vars).unwrap();
    assert_eq!(
        s.server.grpc_addr,
        addr("127.0.0.1:7003"),
        "flag beats env and file"
    );
    assert_eq!(s.cluster.node_id, "from-env", "env beats file");
    assert_eq!(s.logging.format, LogFormat::Text, "env beats file");
    assert_eq!(
        s.server.metrics_addr,
        addr("127.0.0.1:7101"),
        "file beats default"
    );
    assert_eq!(s.logging.level, "debug", "file beats default");
    assert_eq!(s.storage.data_dir, PathBuf::from("/tmp/from-file"));
    assert_eq!(s.proxy.bind_address, Some("127.0.0.5".parse().unwrap()));
    assert_eq!(s.proxy.drain_grace_seconds, 30, "default");
}

#[test]
fn every_flag_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cluster.key");
    std::fs::write(&key, "00".repeat(32)).unwrap();
    let args = ServeArgs {
        config: Some(write_config(&dir, FILE)),
        grpc_addr: Some(addr("127.0.0.1:0")),
        metrics_addr: Some(addr("127.0.0.1:0")),
        log_level: Some("warn".into()),
        data_dir: Some(dir.path().join("data")),
        store_backend: Some(StorageBackend::Memory),
        chainfire_endpoints: vec!["cf-flag:2379".into()],
        node_id: Some("flag-node".into()),
        gossip_addr: Some(addr("127.0.0.1:7946")),
        peers: vec!["127.0.0.2:7946".into(), " 127.0.0.3:7946 ".into()],
        cluster_key_file: Some(key.clone()),
        probe_replicas: Some(3),
        bind_address: Some("127.0.0.9".parse().unwrap()),
        log_format: Some(LogFormat::Json),
    };
    let vars = env(&[
        ("FIBERLB_LOG_LEVEL", "error"),
        ("FIBERLB_STORE_BACKEND", "embedded"),
        ("FIBERLB_CHAINFIRE_ENDPOINTS", "cf-env:2379"),
        ("FIBERLB_GOSSIP_ADDR", "127.0.0.1:1"),
        ("FIBERLB_PEERS", "127.0.0.1:2"),
        ("FIBERLB_CLUSTER_KEY_FILE", "/nonexistent/env.key"),
        ("FIBERLB_PROBE_REPLICAS", "1"),
    ]);
    let s = load_with_env(&args, &vars).unwrap();
    assert_eq!(s.server.grpc_addr, addr("127.0.0.1:0"));
    assert_eq!(s.logging.level, "warn");
    assert_eq!(s.logging.format, LogFormat::Json);
    assert_eq!(s.storage.backend, StorageBackend::Memory);
    assert_eq!(s.storage.data_dir, dir.path().join("data"));
    assert_eq!(s.cluster.node_id, "flag-node");
    assert_eq!(s.proxy.bind_address, Some("127.0.0.9".parse().unwrap()));
    assert_eq!(s.storage.chainfire_endpoints, ["cf-flag:2379"]);
    assert_eq!(s.cluster.gossip_addr, Some(addr("127.0.0.1:7946")));
    assert_eq!(s.cluster.peers, ["127.0.0.2:7946", "127.0.0.3:7946"]);
    assert_eq!(s.cluster.key_file, Some(key));
    assert_eq!(s.cluster.probe_replicas, 3);
}

#[test]
fn fleet_settings_from_env_beat_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cluster.key");
    std::fs::write(&key, "00".repeat(32)).unwrap();
    let file = "[cluster]\ngossip_addr = \"127.0.0.1:7000\"\npeers = [\"127.0.0.1:7001\"]\n\
                key_file = \"/nonexistent/file.key\"\nprobe_replicas = 5\n";
    let args = ServeArgs {
        config: Some(write_config(&dir, file)),
        ..ServeArgs::default()
    };
    let vars = env(&[
        ("FIBERLB_GOSSIP_ADDR", "127.0.0.2:7946"),
        ("FIBERLB_PEERS", " 127.0.0.3:7946, node-4.lb:7946 ,"),
        ("FIBERLB_CLUSTER_KEY_FILE", key.to_str().unwrap()),
        ("FIBERLB_PROBE_REPLICAS", "1"),
    ]);
    let s = load_with_env(&args, &vars).unwrap();
    assert_eq!(s.cluster.gossip_addr, Some(addr("127.0.0.2:7946")));
    assert_eq!(s.cluster.peers, ["127.0.0.3:7946", "node-4.lb:7946"]);
    assert_eq!(s.cluster.key_file, Some(key));
    assert_eq!(s.cluster.probe_replicas, 1);
    // Without the variables the file's (missing) key file is the error, with its line.
    let err = load_with_env(&args, &HashMap::new()).unwrap_err();
    assert!(
        matches!(&err, SettingsError::Invalid { key, origin: Origin::File { .. }, .. }
            if key == "cluster.key_file"),
        "{err:?}"
    );
    assert_eq!(err.line(), Some(4), "{err}");
}

#[test]
fn bad_fleet_flag_values_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cluster.key");
    std::fs::write(&key, "00".repeat(32)).unwrap();
    let gossip = || ServeArgs {
        gossip_addr: Some(addr("127.0.0.1:0")),
        cluster_key_file: Some(key.clone()),
        ..ServeArgs::default()
    };
    let cases = [
        (
            ServeArgs {
                peers: vec!["127.0.0.1:1".into(), "no-port".into()],
                ..gossip()
            },
            "cluster.peers[1]",
            "--peer",
        ),
        (
            ServeArgs {
                probe_replicas: Some(0),
                ..ServeArgs::default()
            },
            "cluster.probe_replicas",
            "--probe-replicas",
        ),
        (
            ServeArgs {
                cluster_key_file: Some(dir.path().join("missing.key")),
                ..gossip()
            },
            "cluster.key_file",
            "--cluster-key-file",
        ),
        (
            ServeArgs {
                store_backend: Some(StorageBackend::Chainfire),
                chainfire_endpoints: vec!["ftp://cf-1".into()],
                ..ServeArgs::default()
            },
            "storage.chainfire_endpoints[0]",
            "--chainfire-endpoints",
        ),
    ];
    for (args, key, flag) in cases {
        let err = load_with_env(&args, &HashMap::new()).unwrap_err();
        match &err {
            SettingsError::Invalid {
                key: k,
                origin: Origin::Flag(f),
                ..
            } => {
                assert_eq!(k, key, "{err}");
                assert_eq!(f, flag, "{err}");
            }
            other => panic!("{flag}: expected a flag error, got {other:?}"),
        }
        assert!(err.to_string().contains(flag), "{err}");
    }
    // Gossip turned on by flag without a key: the key is what is missing.
    let args = ServeArgs {
        gossip_addr: Some(addr("127.0.0.1:0")),
        ..ServeArgs::default()
    };
    let err = load_with_env(&args, &HashMap::new()).unwrap_err();
    assert!(
        matches!(&err, SettingsError::Invalid { key, .. } if key == "cluster.key_file"),
        "{err:?}"
    );
}

#[test]
fn config_path_from_env_and_flag_wins() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, FILE);
    let vars = env(&[("FIBERLB_CONFIG", path.to_str().unwrap())]);
    let s = load_with_env(&ServeArgs::default(), &vars).unwrap();
    assert_eq!(s.cluster.node_id, "from-file");
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "[cluster]\nnode_id = \"other\"\n").unwrap();
    let args = ServeArgs {
        config: Some(other),
        ..ServeArgs::default()
    };
    assert_eq!(
        load_with_env(&args, &vars).unwrap().cluster.node_id,
        "other"
    );
    // No file at all: defaults.
    let s = load_with_env(&ServeArgs::default(), &HashMap::new()).unwrap();
    assert_eq!(s.server.grpc_addr, Settings::default().server.grpc_addr);
}

#[test]
fn missing_config_file_from_env_is_a_read_error() {
    let vars = env(&[("FIBERLB_CONFIG", "/nonexistent/fiberlb.toml")]);
    let err = load_with_env(&ServeArgs::default(), &vars).unwrap_err();
    assert!(matches!(err, SettingsError::Read { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/nonexistent/fiberlb.toml"),
        "{err}"
    );
}

#[test]
fn bad_env_value_names_the_variable() {
    for (var, value, key) in [
        ("FIBERLB_GRPC_ADDR", "localhost", "server.grpc_addr"),
        ("FIBERLB_METRICS_ADDR", "1.2.3.4", "server.metrics_addr"),
        ("FIBERLB_STORE_BACKEND", "sqlite", "storage.backend"),
        ("FIBERLB_LOG_FORMAT", "xml", "logging.format"),
        ("FIBERLB_BIND_ADDRESS", "10.0.0.300", "proxy.bind_address"),
        // Type-correct but invalid: found by validation, still attributed to the variable.
        ("FIBERLB_LOG_LEVEL", "verbose", "logging.level"),
        ("FIBERLB_NODE_ID", "bad id", "cluster.node_id"),
        ("FIBERLB_GOSSIP_ADDR", "127.0.0.1", "cluster.gossip_addr"),
        ("FIBERLB_PROBE_REPLICAS", "two", "cluster.probe_replicas"),
        ("FIBERLB_PROBE_REPLICAS", "0", "cluster.probe_replicas"),
        // Peers without gossip: the list itself is the error (a bad entry: see the flags).
        ("FIBERLB_PEERS", "127.0.0.1:1", "cluster.peers"),
        (
            "FIBERLB_CLUSTER_KEY_FILE",
            "/nonexistent/cluster.key",
            "cluster.key_file",
        ),
        (
            "FIBERLB_CHAINFIRE_ENDPOINTS",
            "cf-1:2379,ftp://cf-2",
            "storage.chainfire_endpoints[1]",
        ),
    ] {
        let err = load_with_env(&ServeArgs::default(), &env(&[(var, value)])).unwrap_err();
        match &err {
            SettingsError::Invalid {
                key: k,
                origin: Origin::Env(v),
                ..
            } => {
                assert_eq!(k, key, "{err}");
                assert_eq!(v, var, "{err}");
            }
            other => panic!("{var}: expected an env error, got {other:?}"),
        }
        assert!(err.to_string().contains(var), "{err}");
    }
}

#[test]
fn bad_flag_value_names_the_flag() {
    let args = ServeArgs {
        log_level: Some("loud".into()),
        ..ServeArgs::default()
    };
    let err = load_with_env(&args, &HashMap::new()).unwrap_err();
    assert!(
        matches!(&err, SettingsError::Invalid { origin: Origin::Flag(f), .. } if f == "--log-level")
    );
    assert!(err.to_string().contains("--log-level"), "{err}");
}

#[test]
fn endpoints_from_env_and_default_origin() {
    let args = ServeArgs {
        store_backend: Some(StorageBackend::Chainfire),
        ..ServeArgs::default()
    };
    let vars = env(&[(
        "FIBERLB_CHAINFIRE_ENDPOINTS",
        " http://cf-1:2379, cf-2:2379 ,",
    )]);
    let s = load_with_env(&args, &vars).unwrap();
    assert_eq!(
        s.storage.chainfire_endpoints,
        ["http://cf-1:2379", "cf-2:2379"]
    );
    // Chainfire chosen by flag, endpoints left at their (empty) default.
    let err = load_with_env(&args, &HashMap::new()).unwrap_err();
    assert!(
        matches!(&err, SettingsError::Invalid { key, origin: Origin::Default, .. }
            if key == "storage.chainfire_endpoints"),
        "{err:?}"
    );
}

#[test]
fn empty_variables_count_as_unset() {
    let vars = env(&[("FIBERLB_GRPC_ADDR", ""), ("FIBERLB_CONFIG", "  ")]);
    let s = load_with_env(&ServeArgs::default(), &vars).unwrap();
    assert_eq!(s.server.grpc_addr, Settings::default().server.grpc_addr);
}

#[test]
fn validation_error_in_file_beaten_by_flag_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, "[logging]\nlevel = \"verbose\"\n");
    let args = ServeArgs {
        config: Some(path.clone()),
        log_level: Some("info".into()),
        ..ServeArgs::default()
    };
    assert!(load_with_env(&args, &HashMap::new()).is_ok());
    let args = ServeArgs {
        config: Some(path),
        ..ServeArgs::default()
    };
    let err = load_with_env(&args, &HashMap::new()).unwrap_err();
    assert_eq!(err.line(), Some(2), "{err}");
}

/// The flags as clap sees them, inside a stand-in for the real `fiberlb serve`.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

#[test]
fn clap_flags() {
    let cli = Cli::try_parse_from([
        "fiberlb",
        "-c",
        "/etc/f.toml",
        "--grpc-addr",
        "127.0.0.1:1",
        "--metrics-addr",
        "127.0.0.1:2",
        "-l",
        "debug",
        "--data-dir",
        "/d",
        "--store-backend",
        "chainfire",
        "--node-id",
        "n1",
        "--bind-address",
        "127.0.0.3",
        "--log-format",
        "json",
        "--chainfire-endpoints",
        "cf-1:2379,cf-2:2379",
        "--chainfire-endpoints",
        "cf-3:2379",
        "--gossip-addr",
        "127.0.0.1:7946",
        "--peer",
        "127.0.0.2:7946",
        "--peer",
        "127.0.0.3:7946,127.0.0.4:7946",
        "--cluster-key-file",
        "/etc/fiberlb/cluster.key",
        "--probe-replicas",
        "3",
    ])
    .unwrap();
    let a = cli.serve;
    assert_eq!(a.config, Some(PathBuf::from("/etc/f.toml")));
    assert_eq!(a.grpc_addr, Some(addr("127.0.0.1:1")));
    assert_eq!(a.metrics_addr, Some(addr("127.0.0.1:2")));
    assert_eq!(a.log_level.as_deref(), Some("debug"));
    assert_eq!(a.data_dir, Some(PathBuf::from("/d")));
    assert_eq!(a.store_backend, Some(StorageBackend::Chainfire));
    assert_eq!(a.node_id.as_deref(), Some("n1"));
    assert_eq!(a.bind_address, Some("127.0.0.3".parse().unwrap()));
    assert_eq!(a.log_format, Some(LogFormat::Json));
    assert_eq!(
        a.chainfire_endpoints,
        ["cf-1:2379", "cf-2:2379", "cf-3:2379"]
    );
    assert_eq!(a.gossip_addr, Some(addr("127.0.0.1:7946")));
    assert_eq!(
        a.peers,
        ["127.0.0.2:7946", "127.0.0.3:7946", "127.0.0.4:7946"]
    );
    assert_eq!(
        a.cluster_key_file,
        Some(PathBuf::from("/etc/fiberlb/cluster.key"))
    );
    assert_eq!(a.probe_replicas, Some(3));
    let err = Cli::try_parse_from(["fiberlb", "--grpc-addr", "nope"])
        .err()
        .unwrap();
    assert!(err.to_string().contains("--grpc-addr"), "{err}");
}

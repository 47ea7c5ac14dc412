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
    let args = ServeArgs {
        config: Some(write_config(&dir, FILE)),
        grpc_addr: Some(addr("127.0.0.1:0")),
        metrics_addr: Some(addr("127.0.0.1:0")),
        log_level: Some("warn".into()),
        data_dir: Some(dir.path().join("data")),
        store_backend: Some(StorageBackend::Memory),
        node_id: Some("flag-node".into()),
        bind_address: Some("127.0.0.9".parse().unwrap()),
        log_format: Some(LogFormat::Json),
    };
    let vars = env(&[
        ("FIBERLB_LOG_LEVEL", "error"),
        ("FIBERLB_STORE_BACKEND", "embedded"),
    ]);
    let s = load_with_env(&args, &vars).unwrap();
    assert_eq!(s.server.grpc_addr, addr("127.0.0.1:0"));
    assert_eq!(s.logging.level, "warn");
    assert_eq!(s.logging.format, LogFormat::Json);
    assert_eq!(s.storage.backend, StorageBackend::Memory);
    assert_eq!(s.storage.data_dir, dir.path().join("data"));
    assert_eq!(s.cluster.node_id, "flag-node");
    assert_eq!(s.proxy.bind_address, Some("127.0.0.9".parse().unwrap()));
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
    let err = Cli::try_parse_from(["fiberlb", "--grpc-addr", "nope"])
        .err()
        .unwrap();
    assert!(err.to_string().contains("--grpc-addr"), "{err}");
}

//! The `fiberlb` command line: `fiberlb serve` runs a node; every other command is a
//! client of a node's gRPC API (like `etcdctl`), plus declarative `apply`/`export`/`import`.
//!
//! Errors print `error: <message>` on stderr and exit 1 (for API errors the message starts
//! with the API's error code, e.g. `LB_NOT_FOUND: ...`); usage errors exit 2 (clap).

pub mod apply;
mod args;
mod cmd;
mod conn;
pub mod document;
pub mod enums;
mod error;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use error::CliError;

use cmd::backend::BackendCmd;
use cmd::cert::CertCmd;
use cmd::lb::LbCmd;
use cmd::listener::ListenerCmd;
use cmd::node::NodeCmd;
use cmd::pool::PoolCmd;
use cmd::rule::RuleCmd;
use cmd::token::TokenCmd;
use conn::{Api, ClientOpts};

const APPLY_HELP: &str = "\
Example document (references are by name; fields left out keep the server's value):

  loadBalancers:
  - name: web
    orgId: acme
    defaultPool: app
    pools:
    - name: app
      algorithm: round_robin
      healthCheck: {type: http, path: /health, expectedCodes: [200]}
      backends:
      - {name: app-1, ip: 10.0.0.1, port: 8080}
    listeners:
    - name: http
      protocol: http
      port: 80
      defaultPool: app
      rules:
      - name: api
        priority: 10
        conditions: [{pathPrefix: /api/}]
        action: {forwardToPool: app}

Examples:
  fiberlb apply -f web.yaml             create or update what differs
  fiberlb apply -f web.yaml --dry-run   show what would change
  fiberlb apply -f web.yaml --prune     also delete what the file does not name
  fiberlb export --org acme | fiberlb apply -f -";

const EXPORT_HELP: &str = "\
Examples:
  fiberlb export --org acme > acme.yaml
  fiberlb export --org acme --project shop -o json -f shop.json
  fiberlb import -f acme.yaml --endpoint http://other-node:6300";

/// FiberLB: a multi-tenant L4/L7 load balancer. `serve` runs a node; the other commands
/// manage load balancers through any node's API.
#[derive(Debug, Parser)]
#[command(name = "fiberlb", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    opts: ClientOpts,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node (gRPC API, admin HTTP, data plane).
    Serve(Box<crate::settings::ServeArgs>),
    /// Manage load balancers.
    #[command(subcommand)]
    Lb(LbCmd),
    /// Manage listeners.
    #[command(subcommand)]
    Listener(ListenerCmd),
    /// Manage the routing rules of a listener.
    #[command(subcommand)]
    Rule(RuleCmd),
    /// Manage pools and their health checks.
    #[command(subcommand)]
    Pool(PoolCmd),
    /// Manage the backends of a pool.
    #[command(subcommand)]
    Backend(BackendCmd),
    /// Manage TLS certificates.
    #[command(subcommand)]
    Cert(CertCmd),
    /// Manage access tokens and API keys.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Inspect the node answering.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Make load balancers match a YAML/JSON document (create/update what differs).
    #[command(after_help = APPLY_HELP)]
    Apply(apply::ApplyArgs),
    /// Write a document describing every load balancer of an org (YAML, or JSON with -o json).
    #[command(after_help = EXPORT_HELP)]
    Export(apply::ExportArgs),
    /// Apply an exported document (the same as `apply`).
    #[command(after_help = EXPORT_HELP)]
    Import(apply::ApplyArgs),
    /// Validate a server configuration file without starting anything (exit 0 or 1).
    CheckConfig(CheckConfigArgs),
}

/// `fiberlb check-config`.
#[derive(Debug, clap::Args)]
struct CheckConfigArgs {
    /// The TOML file to check.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    file: std::path::PathBuf,
    /// Print the effective configuration (defaults filled in) when the file is valid.
    #[arg(long)]
    print: bool,
}

/// Threads of the control plane's runtime.
const CONTROL_THREADS: usize = 2;

/// Entry point of the `fiberlb` binary.
pub fn main() -> ExitCode {
    crate::alloc_trim::disable_huge_pages();
    let cli = Cli::parse();
    // The control plane's runtime (API, health checks, gossip, BGP; the CLI's client).
    // The data plane runs on its own threads (`[proxy] worker_threads`, see
    // `proxy::workers`), so two threads are plenty here.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(CONTROL_THREADS);
    let runtime = match builder
        .on_thread_park(crate::alloc_trim::on_park)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), CliError> {
    let fmt = cli.opts.output;
    let command = match cli.command {
        Command::Serve(args) => {
            let settings = crate::settings::load(&args).map_err(|e| CliError::Serve(e.into()))?;
            return crate::server::run(settings, (*args).clone())
                .await
                .map_err(CliError::Serve);
        }
        Command::CheckConfig(a) => {
            let settings =
                crate::settings::check_file(&a.file).map_err(|e| CliError::Serve(e.into()))?;
            if a.print {
                print!("{}", settings.to_toml());
            } else {
                println!("ok: {}", a.file.display());
            }
            return Ok(());
        }
        other => other,
    };
    let api = Api::connect(&cli.opts).await?;
    match command {
        Command::Serve(_) | Command::CheckConfig(_) => Ok(()),
        Command::Lb(c) => cmd::lb::run(api, c, fmt).await,
        Command::Listener(c) => cmd::listener::run(api, c, fmt).await,
        Command::Rule(c) => cmd::rule::run(api, c, fmt).await,
        Command::Pool(c) => cmd::pool::run(api, c, fmt).await,
        Command::Backend(c) => cmd::backend::run(api, c, fmt).await,
        Command::Cert(c) => cmd::cert::run(api, c, fmt).await,
        Command::Token(c) => cmd::token::run(api, c, fmt).await,
        Command::Node(c) => cmd::node::run(api, c, fmt).await,
        Command::Apply(a) | Command::Import(a) => apply::apply(api, &a).await,
        Command::Export(a) => apply::export(api, &a, fmt).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_work_before_and_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "fiberlb",
            "--endpoint",
            "http://h:1",
            "lb",
            "get",
            "x",
            "-o",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.opts.endpoint, "http://h:1");
        assert_eq!(cli.opts.output, output::Format::Json);
        let cli = Cli::try_parse_from([
            "fiberlb",
            "pool",
            "list",
            "--lb",
            "l",
            "--timeout-seconds",
            "3",
        ])
        .unwrap();
        assert_eq!(cli.opts.timeout_seconds, 3);
    }

    #[test]
    fn serve_keeps_its_own_data_dir() {
        let cli = Cli::try_parse_from(["fiberlb", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.data_dir, None);
        let cli = Cli::try_parse_from(["fiberlb", "serve", "--data-dir", "/tmp/x"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(
            args.data_dir.as_deref(),
            Some(std::path::Path::new("/tmp/x"))
        );
    }

    #[test]
    fn rule_flags_parse() {
        let cli = Cli::try_parse_from([
            "fiberlb",
            "rule",
            "add",
            "--listener",
            "l",
            "--name",
            "api",
            "--host",
            "a.example.com",
            "--host",
            "b.example.com",
            "--method",
            "GET,post",
            "--header",
            "x-env=prod,dev",
            "--redirect",
            "https://x/",
            "--status",
            "301",
        ])
        .unwrap();
        let Command::Rule(RuleCmd::Add { rule, .. }) = cli.command else {
            panic!("not rule add")
        };
        assert_eq!(rule.hosts.len(), 2);
        assert_eq!(rule.method, vec![enums::Method::Get, enums::Method::Post]);
        assert!(Cli::try_parse_from([
            "fiberlb",
            "rule",
            "add",
            "--listener",
            "l",
            "--forward-pool",
            "p",
            "--fixed-status",
            "404"
        ])
        .is_err());
    }

    #[test]
    fn usage_errors_exit_2() {
        let err = Cli::try_parse_from(["fiberlb", "lb", "create"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}

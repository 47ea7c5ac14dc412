//! `fiberlb node ...`: the node answering the call (ClusterService).

use fiberlb_proto::v1 as pv;

use crate::cli::conn::Api;
use crate::cli::error::CliError;
use crate::cli::output::{print_object, Format};

/// Node commands.
#[derive(Debug, clap::Subcommand)]
pub enum NodeCmd {
    /// Show the node's id, version, store state, readiness and gossip view.
    Status,
}

/// Runs one node command.
pub async fn run(api: Api, cmd: NodeCmd, fmt: Format) -> Result<(), CliError> {
    match cmd {
        NodeCmd::Status => print_object(
            fmt,
            &api.cluster
                .clone()
                .get_node_status(pv::GetNodeStatusRequest {})
                .await?
                .into_inner(),
        ),
    }
}

//! `fiberlb node ...`: the node answering the call (ClusterService).

use fiberlb_proto::v1 as pv;

use crate::cli::conn::Api;
use crate::cli::error::CliError;
use crate::cli::output::{print_list, print_object, Column, Format};

/// Node commands.
#[derive(Debug, clap::Subcommand)]
pub enum NodeCmd {
    /// Show the node's id, version, store state, readiness and gossip view.
    Status,
    /// Show the node's BGP sessions (peer, state, uptime, routes) and the VIPs it announces.
    Bgp,
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
        NodeCmd::Bgp => {
            let r = api
                .cluster
                .clone()
                .list_bgp_sessions(pv::ListBgpSessionsRequest {})
                .await?
                .into_inner();
            print_bgp(fmt, &r)
        }
    }
}

/// Columns of `node bgp`.
const BGP_COLUMNS: &[Column] = &[
    Column::Field("PEER", "/peer"),
    Column::Field("ASN", "/peer_asn"),
    Column::Field("STATE", "/state"),
    Column::Computed("UPTIME", uptime),
    Column::Field("ANNOUNCED", "/routes_announced"),
    Column::Field("RECEIVED", "/routes_received"),
    Column::Field("LAST_ERROR", "/last_error"),
];

fn uptime(row: &serde_json::Value) -> String {
    let up = row.get("state").and_then(|s| s.as_str()) == Some("established");
    match row.get("uptime_seconds").and_then(|u| u.as_u64()) {
        Some(s) if up => format!("{s}s"),
        _ => "-".into(),
    }
}

/// Sessions as a table followed by the announced VIPs (or the whole answer in json/yaml),
/// with session states by name.
fn print_bgp(fmt: Format, r: &pv::ListBgpSessionsResponse) -> Result<(), CliError> {
    use serde_json::json;
    let state = |s: i32| {
        pv::BgpSessionState::try_from(s)
            .map(|s| s.as_str_name())
            .unwrap_or("BGP_SESSION_STATE_UNSPECIFIED")
            .trim_start_matches("BGP_SESSION_STATE_")
            .to_ascii_lowercase()
    };
    let v = json!({
        "enabled": r.enabled,
        "local_asn": r.local_asn,
        "router_id": r.router_id,
        "sessions": r.sessions.iter().map(|s| json!({
            "peer": s.peer,
            "peer_asn": s.peer_asn,
            "state": state(s.state),
            "uptime_seconds": s.uptime_seconds,
            "routes_announced": s.routes_announced,
            "routes_received": s.routes_received,
            "last_error": (!s.last_error.is_empty()).then_some(&s.last_error),
        })).collect::<Vec<_>>(),
        "announced_vips": r.announced_vips.iter().map(|a| json!({
            "vip": a.vip,
            "lb_id": a.lb_id,
            "graceful_shutdown": a.graceful_shutdown,
        })).collect::<Vec<_>>(),
    });
    if fmt != Format::Table {
        return print_object(fmt, &v);
    }
    if !r.enabled {
        println!("BGP is off on this node ([bgp] enabled = false)");
        return Ok(());
    }
    println!("AS {} router id {}", r.local_asn, r.router_id);
    print_list(fmt, &v, "sessions", BGP_COLUMNS)?;
    let vips: Vec<String> = r
        .announced_vips
        .iter()
        .map(|a| {
            let gs = if a.graceful_shutdown {
                ", graceful shutdown"
            } else {
                ""
            };
            format!("{} (lb {}{gs})", a.vip, a.lb_id)
        })
        .collect();
    if vips.is_empty() {
        println!("announced VIPs: none");
    } else {
        println!("announced VIPs: {}", vips.join(", "));
    }
    Ok(())
}

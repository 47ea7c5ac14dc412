//! `fiberlb pool ...`: pools (PoolService).

use fiberlb_proto::v1 as pv;
use serde_json::Value;

use super::health_flags::{CircuitFlags, HealthFlags, PersistenceFlags};
use crate::cli::args::{collect, Paging};
use crate::cli::conn::Api;
use crate::cli::enums::{Algorithm, ProxyProtocol};
use crate::cli::error::CliError;
use crate::cli::output::{print_done, print_list, print_object, Column, Format};

/// Pool commands.
#[derive(Debug, clap::Subcommand)]
pub enum PoolCmd {
    /// Create a pool on a load balancer.
    Create {
        /// Load balancer id.
        #[arg(long, alias = "lb-id")]
        lb: String,
        /// Name, unique within the load balancer.
        #[arg(long)]
        name: String,
        /// Balancing algorithm (default round-robin).
        #[arg(long, value_enum)]
        algorithm: Option<Algorithm>,
        #[command(flatten)]
        health: HealthFlags,
        #[command(flatten)]
        persistence: PersistenceFlags,
        #[command(flatten)]
        circuit: CircuitFlags,
        /// PROXY protocol header sent to backends by L4 listeners (default none).
        #[arg(long, value_enum)]
        proxy_protocol: Option<ProxyProtocol>,
    },
    /// Show a pool.
    Get {
        /// Pool id.
        id: String,
    },
    /// List the pools of a load balancer.
    List {
        /// Load balancer id.
        #[arg(long, alias = "lb-id")]
        lb: String,
        /// Only names starting with this.
        #[arg(long)]
        name_filter: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Change a pool (the health check has its own commands).
    Update {
        /// Pool id.
        id: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// Balancing algorithm.
        #[arg(long, value_enum)]
        algorithm: Option<Algorithm>,
        /// Enable (true) or disable (false) the pool.
        #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
        enabled: Option<bool>,
        #[command(flatten)]
        persistence: PersistenceFlags,
        #[command(flatten)]
        circuit: CircuitFlags,
        /// PROXY protocol header sent to backends by L4 listeners.
        #[arg(long, value_enum)]
        proxy_protocol: Option<ProxyProtocol>,
        /// Fail unless the pool is still at this revision.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Delete a pool.
    Delete {
        /// Pool id.
        id: String,
        /// Fail unless the pool is still at this revision.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Set (replace) a pool's active health check.
    #[command(
        after_help = "Example:\n  fiberlb pool set-health-check POOL --check http --path /health --expect 200,204 --interval 5"
    )]
    SetHealthCheck {
        /// Pool id.
        id: String,
        #[command(flatten)]
        health: HealthFlags,
        /// Fail unless the pool is still at this revision.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Remove a pool's active health check.
    RemoveHealthCheck {
        /// Pool id.
        id: String,
        /// Fail unless the pool is still at this revision.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Show a pool's backend health counts and circuit state.
    Status {
        /// Pool id.
        id: String,
    },
}

fn check_type(row: &Value) -> String {
    row.pointer("/health_check/check_type")
        .and_then(Value::as_object)
        .and_then(|m| m.keys().next().cloned())
        .unwrap_or_else(|| "-".into())
}

/// Columns of `pool list`.
pub const COLUMNS: &[Column] = &[
    Column::Field("ID", "/id"),
    Column::Field("NAME", "/name"),
    Column::Field("ALGORITHM", "/algorithm"),
    Column::Count("BACKENDS", "/backends"),
    Column::Computed("HEALTH_CHECK", check_type),
    Column::Field("ENABLED", "/enabled"),
];

/// Runs one pool command.
pub async fn run(api: Api, cmd: PoolCmd, fmt: Format) -> Result<(), CliError> {
    let mut c = api.pool.clone();
    match cmd {
        PoolCmd::Create {
            lb,
            name,
            algorithm,
            health,
            persistence,
            circuit,
            proxy_protocol,
        } => {
            let req = pv::CreatePoolRequest {
                lb_id: lb,
                name,
                algorithm: algorithm.map_or(0, |a| a.to_proto()),
                health_check: health.to_proto()?,
                session_persistence: persistence.apply_to(None),
                circuit_breaker: circuit.apply_to(None),
                proxy_protocol: proxy_protocol.map_or(0, |p| p.to_proto()),
            };
            print_object(fmt, &c.create_pool(req).await?.into_inner())
        }
        PoolCmd::Get { id } => print_object(
            fmt,
            &c.get_pool(pv::GetPoolRequest { pool_id: id })
                .await?
                .into_inner(),
        ),
        PoolCmd::List {
            lb,
            name_filter,
            paging,
        } => {
            let (pools, next_page_token, total_count) = collect(&paging, |page_token| {
                let mut c = c.clone();
                let req = pv::ListPoolsRequest {
                    lb_id: lb.clone(),
                    limit: paging.limit,
                    page_token,
                    name_filter: name_filter.clone(),
                };
                async move {
                    let r = c.list_pools(req).await?.into_inner();
                    Ok((r.pools, r.next_page_token, r.total_count))
                }
            })
            .await?;
            print_list(
                fmt,
                &pv::ListPoolsResponse {
                    pools,
                    next_page_token,
                    total_count,
                },
                "pools",
                COLUMNS,
            )
        }
        PoolCmd::Update {
            id,
            name,
            algorithm,
            enabled,
            persistence,
            circuit,
            proxy_protocol,
            revision,
        } => {
            // The API replaces persistence and breaker settings whole: start from the
            // current ones so that one flag changes one thing.
            let (mut session_persistence, mut circuit_breaker) = (None, None);
            if persistence.apply_to(None).is_some() || circuit.apply_to(None).is_some() {
                let cur = c
                    .get_pool(pv::GetPoolRequest {
                        pool_id: id.clone(),
                    })
                    .await?
                    .into_inner();
                session_persistence = persistence.apply_to(cur.session_persistence);
                circuit_breaker = circuit.apply_to(cur.circuit_breaker);
            }
            let req = pv::UpdatePoolRequest {
                pool_id: id,
                name,
                algorithm: algorithm.map(|a| a.to_proto()),
                session_persistence,
                circuit_breaker,
                enabled,
                revision,
                proxy_protocol: proxy_protocol.map(|p| p.to_proto()),
            };
            print_object(fmt, &c.update_pool(req).await?.into_inner())
        }
        PoolCmd::Delete { id, revision } => {
            let r = c
                .delete_pool(pv::DeletePoolRequest {
                    pool_id: id,
                    revision,
                })
                .await?
                .into_inner();
            print_done(fmt, &format!("deleted pool {}", r.pool_id), &r)
        }
        PoolCmd::SetHealthCheck {
            id,
            health,
            revision,
        } => {
            let health_check = health
                .to_proto()?
                .ok_or_else(|| CliError::invalid("--check is required"))?;
            let req = pv::SetHealthCheckRequest {
                pool_id: id,
                health_check: Some(health_check),
                revision,
            };
            print_object(fmt, &c.set_health_check(req).await?.into_inner())
        }
        PoolCmd::RemoveHealthCheck { id, revision } => {
            let req = pv::RemoveHealthCheckRequest {
                pool_id: id,
                revision,
            };
            print_object(fmt, &c.remove_health_check(req).await?.into_inner())
        }
        PoolCmd::Status { id } => print_object(
            fmt,
            &c.get_pool_status(pv::GetPoolStatusRequest { pool_id: id })
                .await?
                .into_inner(),
        ),
    }
}

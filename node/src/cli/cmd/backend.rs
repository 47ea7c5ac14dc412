//! `fiberlb backend ...`: the backends of a pool (BackendService).

use fiberlb_proto::v1 as pv;
use serde_json::Value;

use crate::cli::args::{collect, key_value, to_map, Paging};
use crate::cli::conn::Api;
use crate::cli::error::CliError;
use crate::cli::output::{print_done, print_list, print_object, Column, Format};

/// Where a backend is: one of an IP address, a DNS name or a VM id.
#[derive(Debug, Clone, clap::Args)]
#[group(multiple = false)]
pub struct AddressFlags {
    /// IP address.
    #[arg(long)]
    pub ip: Option<String>,
    /// DNS name.
    #[arg(long)]
    pub hostname: Option<String>,
    /// PlasmaVMC VM id.
    #[arg(long)]
    pub vm_id: Option<String>,
}

impl AddressFlags {
    fn to_proto(&self) -> Option<pv::BackendAddress> {
        use pv::backend_address::Address;
        let a = match (&self.ip, &self.hostname, &self.vm_id) {
            (Some(ip), _, _) => Address::Ip(ip.clone()),
            (_, Some(h), _) => Address::Hostname(h.clone()),
            (_, _, Some(v)) => Address::VmId(v.clone()),
            _ => return None,
        };
        Some(pv::BackendAddress { address: Some(a) })
    }
}

/// Backend commands.
#[derive(Debug, clap::Subcommand)]
pub enum BackendCmd {
    /// Add a backend to a pool.
    #[command(
        after_help = "Example:\n  fiberlb backend add --pool POOL --name app-1 --ip 10.0.0.1 --port 8080 --weight 2 --max-connections 500"
    )]
    Add {
        /// Pool id.
        #[arg(long, alias = "pool-id")]
        pool: String,
        /// Name, unique within the pool.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        address: AddressFlags,
        /// Port.
        #[arg(long)]
        port: u32,
        /// Relative weight (default 1).
        #[arg(long)]
        weight: Option<u32>,
        /// Most connections (L4) or in-flight requests (L7) the whole fleet may hold to
        /// it; a full backend gets no new ones. 0 or absent = unlimited.
        #[arg(long, value_name = "N")]
        max_connections: Option<u32>,
        /// Metadata KEY=VALUE (repeatable).
        #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = key_value)]
        metadata: Vec<(String, String)>,
        /// Serve only when no primary backend of the pool is healthy.
        #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
        backup: Option<bool>,
    },
    /// Show a backend.
    Get {
        /// Backend id.
        id: String,
    },
    /// List the backends of a pool.
    List {
        /// Pool id.
        #[arg(long, alias = "pool-id")]
        pool: String,
        /// Only healthy backends.
        #[arg(long)]
        healthy_only: bool,
        /// Only names starting with this.
        #[arg(long)]
        name_filter: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Change a backend.
    Update {
        /// Backend id.
        id: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        address: AddressFlags,
        /// New port.
        #[arg(long)]
        port: Option<u32>,
        /// New weight.
        #[arg(long)]
        weight: Option<u32>,
        /// New connection limit, fleet-wide (0 = unlimited).
        #[arg(long, value_name = "N")]
        max_connections: Option<u32>,
        /// Enable (true) or disable (false) the backend.
        #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
        enabled: Option<bool>,
        /// Make it a backup (true) or a primary (false) backend.
        #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
        backup: Option<bool>,
        /// Fail unless the backend is still at this revision.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Remove a backend (at once, or after draining with --drain-first).
    Remove {
        /// Backend id.
        id: String,
        /// Drain first: no new connections, removal at the drain deadline.
        #[arg(long)]
        drain_first: bool,
        /// Drain deadline, seconds (with --drain-first).
        #[arg(long, value_name = "SECONDS", requires = "drain_first")]
        drain_timeout: Option<u32>,
        /// Fail unless the backend is still at this revision.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Drain a backend: no new connections; existing ones end by the deadline.
    Drain {
        /// Backend id.
        id: String,
        /// Deadline, seconds (server default 300).
        #[arg(long, value_name = "SECONDS")]
        drain_timeout: Option<u32>,
        /// Fail unless the backend is still at this revision.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Stop draining a backend.
    Undrain {
        /// Backend id.
        id: String,
        /// Fail unless the backend is still at this revision.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Show a backend's health, or with --pool the health of every backend of a pool.
    Health {
        /// Backend id.
        #[arg(required_unless_present = "pool", conflicts_with = "pool")]
        id: Option<String>,
        /// Pool id: list the health of all its backends.
        #[arg(long, alias = "pool-id")]
        pool: Option<String>,
    },
}

fn address(row: &Value) -> String {
    row.pointer("/address/address")
        .and_then(Value::as_object)
        .and_then(|m| m.iter().next())
        .map(|(kind, v)| {
            let v = v.as_str().unwrap_or_default();
            if kind == "vm_id" {
                format!("vm:{v}")
            } else {
                v.to_string()
            }
        })
        .unwrap_or_else(|| "-".into())
}

/// Columns of `backend list`.
pub const COLUMNS: &[Column] = &[
    Column::Field("ID", "/id"),
    Column::Field("NAME", "/name"),
    Column::Computed("ADDRESS", address),
    Column::Field("PORT", "/port"),
    Column::Field("WEIGHT", "/weight"),
    Column::Field("STATUS", "/status"),
    Column::Field("HEALTHY", "/health_status/healthy"),
    Column::Field("ENABLED", "/enabled"),
    Column::Field("BACKUP", "/backup"),
    Column::Field("MAX_CONNS", "/max_connections"),
];

/// Columns of `backend health --pool`.
pub const HEALTH_COLUMNS: &[Column] = &[
    Column::Field("BACKEND_ID", "/backend_id"),
    Column::Field("NAME", "/backend_name"),
    Column::Field("HEALTHY", "/health_status/healthy"),
    Column::Field("LAST_CHECK", "/health_status/last_check"),
    Column::Field("FAILURES", "/health_status/consecutive_failures"),
    Column::Field("SUCCESSES", "/health_status/consecutive_successes"),
    Column::Field("LAST_ERROR", "/health_status/last_error"),
];

/// Runs one backend command.
pub async fn run(api: Api, cmd: BackendCmd, fmt: Format) -> Result<(), CliError> {
    let mut c = api.backend.clone();
    match cmd {
        BackendCmd::Add {
            pool,
            name,
            address,
            port,
            weight,
            max_connections,
            metadata,
            backup,
        } => {
            let address = address
                .to_proto()
                .ok_or_else(|| CliError::invalid("one of --ip, --hostname, --vm-id is required"))?;
            let req = pv::AddBackendRequest {
                pool_id: pool,
                name,
                address: Some(address),
                port,
                weight,
                metadata: to_map(&metadata),
                backup,
                max_connections,
            };
            print_object(fmt, &c.add_backend(req).await?.into_inner())
        }
        BackendCmd::Get { id } => print_object(
            fmt,
            &c.get_backend(pv::GetBackendRequest { backend_id: id })
                .await?
                .into_inner(),
        ),
        BackendCmd::List {
            pool,
            healthy_only,
            name_filter,
            paging,
        } => {
            let (backends, next_page_token, total_count) = collect(&paging, |page_token| {
                let mut c = c.clone();
                let req = pv::ListBackendsRequest {
                    pool_id: pool.clone(),
                    healthy_only: healthy_only.then_some(true),
                    limit: paging.limit,
                    page_token,
                    name_filter: name_filter.clone(),
                };
                async move {
                    let r = c.list_backends(req).await?.into_inner();
                    Ok((r.backends, r.next_page_token, r.total_count))
                }
            })
            .await?;
            print_list(
                fmt,
                &pv::ListBackendsResponse {
                    backends,
                    next_page_token,
                    total_count,
                },
                "backends",
                COLUMNS,
            )
        }
        BackendCmd::Update {
            id,
            name,
            address,
            port,
            weight,
            max_connections,
            enabled,
            backup,
            revision,
        } => {
            let req = pv::UpdateBackendRequest {
                backend_id: id,
                name,
                port,
                weight,
                enabled,
                revision,
                backup,
                address: address.to_proto(),
                max_connections,
            };
            print_object(fmt, &c.update_backend(req).await?.into_inner())
        }
        BackendCmd::Remove {
            id,
            drain_first,
            drain_timeout,
            revision,
        } => {
            let req = pv::RemoveBackendRequest {
                backend_id: id,
                drain_first,
                drain_timeout_seconds: drain_timeout,
                revision,
            };
            let r = c.remove_backend(req).await?.into_inner();
            let msg = if r.removed {
                format!("removed backend {}", r.backend_id)
            } else {
                let until = r
                    .drain_deadline
                    .map(crate::cli::output::format_time_ms)
                    .unwrap_or_else(|| "its deadline".into());
                format!(
                    "draining backend {}; it will be removed at {until}",
                    r.backend_id
                )
            };
            print_done(fmt, &msg, &r)
        }
        BackendCmd::Drain {
            id,
            drain_timeout,
            revision,
        } => {
            let req = pv::DrainBackendRequest {
                backend_id: id,
                timeout_seconds: drain_timeout,
                revision,
            };
            print_object(fmt, &c.drain_backend(req).await?.into_inner())
        }
        BackendCmd::Undrain { id, revision } => {
            let req = pv::UndrainBackendRequest {
                backend_id: id,
                revision,
            };
            print_object(fmt, &c.undrain_backend(req).await?.into_inner())
        }
        BackendCmd::Health { id: Some(id), .. } => print_object(
            fmt,
            &c.get_backend_health(pv::GetBackendHealthRequest { backend_id: id })
                .await?
                .into_inner(),
        ),
        BackendCmd::Health { id: None, pool } => {
            let pool_id = pool.ok_or_else(|| CliError::invalid("give a backend id or --pool"))?;
            let r = c
                .list_backend_health(pv::ListBackendHealthRequest { pool_id })
                .await?
                .into_inner();
            print_list(fmt, &r, "entries", HEALTH_COLUMNS)
        }
    }
}

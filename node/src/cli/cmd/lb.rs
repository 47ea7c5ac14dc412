//! `fiberlb lb ...`: load balancers (LbService).

use fiberlb_proto::v1 as pv;

use crate::cli::args::{collect, key_value, to_map, Paging};
use crate::cli::conn::Api;
use crate::cli::enums::LbStatus;
use crate::cli::error::CliError;
use crate::cli::output::{print_done, print_list, print_object, Column, Format};

/// Load balancer commands.
#[derive(Debug, clap::Subcommand)]
pub enum LbCmd {
    /// Create a load balancer.
    Create {
        /// Name, unique within the org/project.
        #[arg(long)]
        name: String,
        /// Owning organization.
        #[arg(long)]
        org: String,
        /// Owning project.
        #[arg(long)]
        project: Option<String>,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
        /// Tag KEY=VALUE (repeatable).
        #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = key_value)]
        tags: Vec<(String, String)>,
        /// Metadata KEY=VALUE (repeatable).
        #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = key_value)]
        metadata: Vec<(String, String)>,
        /// Anycast VIP (default: allocated by the server when it has a VIP prefix).
        #[arg(long)]
        vip: Option<String>,
    },
    /// Show a load balancer.
    Get {
        /// Load balancer id.
        id: String,
    },
    /// List the load balancers of an org.
    List {
        /// Organization.
        #[arg(long)]
        org: String,
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
        /// Only names starting with this.
        #[arg(long)]
        name_filter: Option<String>,
        /// Only load balancers in this state.
        #[arg(long, value_enum)]
        status: Option<LbStatus>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Change a load balancer.
    Update {
        /// Load balancer id.
        id: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New description.
        #[arg(long)]
        description: Option<String>,
        /// Default pool id ("" clears it).
        #[arg(long, alias = "default-pool-id", value_name = "POOL_ID")]
        default_pool: Option<String>,
        /// Replace the tags with these KEY=VALUE (repeatable).
        #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = key_value)]
        tags: Vec<(String, String)>,
        /// Remove every tag.
        #[arg(long, conflicts_with = "tags")]
        clear_tags: bool,
        /// Replace the metadata with these KEY=VALUE (repeatable).
        #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = key_value)]
        metadata: Vec<(String, String)>,
        /// Remove all metadata.
        #[arg(long, conflicts_with = "metadata")]
        clear_metadata: bool,
        /// New VIP ("" clears it).
        #[arg(long)]
        vip: Option<String>,
        /// Fail unless the load balancer is still at this revision.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Delete a load balancer.
    Delete {
        /// Load balancer id.
        id: String,
        /// Also delete its listeners, pools and backends.
        #[arg(long)]
        force: bool,
        /// Fail unless the load balancer is still at this revision.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Enable a disabled load balancer.
    Enable {
        /// Load balancer id.
        id: String,
        /// Fail unless the load balancer is still at this revision.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Disable a load balancer: its listeners stop accepting traffic.
    Disable {
        /// Load balancer id.
        id: String,
        /// Fail unless the load balancer is still at this revision.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Show a load balancer's state and backend counts.
    Status {
        /// Load balancer id.
        id: String,
    },
}

/// Columns of `lb list`.
pub const COLUMNS: &[Column] = &[
    Column::Field("ID", "/id"),
    Column::Field("NAME", "/name"),
    Column::Field("ORG", "/org_id"),
    Column::Field("PROJECT", "/project_id"),
    Column::Field("VIP", "/vip"),
    Column::Field("STATUS", "/status"),
    Column::Count("LISTENERS", "/listeners"),
    Column::Field("DEFAULT_POOL", "/default_pool_id"),
];

/// Runs one load balancer command.
pub async fn run(api: Api, cmd: LbCmd, fmt: Format) -> Result<(), CliError> {
    let mut c = api.lb.clone();
    match cmd {
        LbCmd::Create {
            name,
            org,
            project,
            description,
            tags,
            metadata,
            vip,
        } => {
            let req = pv::CreateLoadBalancerRequest {
                name,
                org_id: org,
                project_id: project,
                description,
                tags: to_map(&tags),
                metadata: to_map(&metadata),
                vip,
            };
            print_object(fmt, &c.create_load_balancer(req).await?.into_inner())
        }
        LbCmd::Get { id } => print_object(
            fmt,
            &c.get_load_balancer(pv::GetLoadBalancerRequest { lb_id: id })
                .await?
                .into_inner(),
        ),
        LbCmd::List {
            org,
            project,
            name_filter,
            status,
            paging,
        } => {
            let (load_balancers, next_page_token, total_count) = collect(&paging, |page_token| {
                let mut c = c.clone();
                let req = pv::ListLoadBalancersRequest {
                    org_id: org.clone(),
                    project_id: project.clone(),
                    name_filter: name_filter.clone(),
                    status_filter: status.map(|s| s.to_proto()),
                    limit: paging.limit,
                    page_token,
                };
                async move {
                    let r = c.list_load_balancers(req).await?.into_inner();
                    Ok((r.load_balancers, r.next_page_token, r.total_count))
                }
            })
            .await?;
            let resp = pv::ListLoadBalancersResponse {
                load_balancers,
                next_page_token,
                total_count,
            };
            print_list(fmt, &resp, "load_balancers", COLUMNS)
        }
        LbCmd::Update {
            id,
            name,
            description,
            default_pool,
            tags,
            clear_tags,
            metadata,
            clear_metadata,
            vip,
            revision,
        } => {
            let req = pv::UpdateLoadBalancerRequest {
                lb_id: id,
                name,
                description,
                default_pool_id: default_pool,
                tags: to_map(&tags),
                revision,
                vip,
                clear_tags,
                metadata: to_map(&metadata),
                clear_metadata,
            };
            print_object(fmt, &c.update_load_balancer(req).await?.into_inner())
        }
        LbCmd::Delete {
            id,
            force,
            revision,
        } => {
            let r = c
                .delete_load_balancer(pv::DeleteLoadBalancerRequest {
                    lb_id: id,
                    force,
                    revision,
                })
                .await?
                .into_inner();
            print_done(fmt, &format!("deleted load balancer {}", r.lb_id), &r)
        }
        LbCmd::Enable { id, revision } => {
            let req = pv::EnableLoadBalancerRequest {
                lb_id: id,
                revision,
            };
            print_object(fmt, &c.enable_load_balancer(req).await?.into_inner())
        }
        LbCmd::Disable { id, revision } => {
            let req = pv::DisableLoadBalancerRequest {
                lb_id: id,
                revision,
            };
            print_object(fmt, &c.disable_load_balancer(req).await?.into_inner())
        }
        LbCmd::Status { id } => {
            let req = pv::GetLoadBalancerStatusRequest { lb_id: id };
            print_object(fmt, &c.get_load_balancer_status(req).await?.into_inner())
        }
    }
}

//! `ClusterService`: this node's status, its view of the fleet's members and its BGP
//! sessions.

use fiberlb_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::{reply, Api};
use crate::model::now_ms;

mod bgp;

#[tonic::async_trait]
impl pb::cluster_service_server::ClusterService for Api {
    async fn get_node_status(
        &self,
        req: Request<pb::GetNodeStatusRequest>,
    ) -> Result<Response<pb::NodeStatus>, Status> {
        let p = self.principal(&req).await?;
        reply(p.require("fiberlb:cluster:get").map(|()| {
            let i = self.runtime.node_info();
            pb::NodeStatus {
                node_id: i.node_id,
                version: i.version,
                store_backend: self.repo.store().backend_name().to_string(),
                store_state: if i.store_up { "up" } else { "down" }.to_string(),
                snapshot_revision: i.snapshot_revision,
                started_at: i.started_at,
                uptime_seconds: now_ms().saturating_sub(i.started_at) / 1000,
                grpc_addr: i.grpc_addr,
                admin_addr: i.admin_addr,
                ready: i.ready,
                gossip_members: i.gossip_members,
                probes_owned: i.probes_owned,
            }
        }))
    }

    async fn list_members(
        &self,
        req: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let p = self.principal(&req).await?;
        reply(p.require("fiberlb:cluster:get").map(|()| {
            use crate::runtime::MemberState as S;
            let members = self
                .runtime
                .members()
                .into_iter()
                .map(|m| pb::Member {
                    node_id: m.node_id,
                    state: match m.state {
                        S::Alive => pb::MemberState::Alive,
                        S::Suspect => pb::MemberState::Suspect,
                        S::Down => pb::MemberState::Down,
                    } as i32,
                    api_addr: m.api_addr,
                    gossip_addr: m.gossip_addr,
                    generation: m.generation,
                    is_self: m.is_self,
                })
                .collect();
            pb::ListMembersResponse { members }
        }))
    }

    async fn list_bgp_sessions(
        &self,
        req: Request<pb::ListBgpSessionsRequest>,
    ) -> Result<Response<pb::ListBgpSessionsResponse>, Status> {
        let p = self.principal(&req).await?;
        reply(
            p.require("fiberlb:cluster:get")
                .map(|()| bgp::to_proto(self.runtime.bgp())),
        )
    }
}

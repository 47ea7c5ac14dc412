//! Pages cover a listing exactly once, in name order.

use std::collections::BTreeSet;
use std::sync::Arc;

use fiberlb_proto::v1 as pb;
use fiberlb_tests::fixtures;
use fiberlb_tests::{bounded, expect_err, Code, Node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_over_250_load_balancers() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let c = node.admin()?;
    bounded(async {
        // Created out of name order (97 is coprime with 250), by a few concurrent writers.
        let names: Vec<String> = (0..250)
            .map(|i| format!("lb-{:03}", (i * 97) % 250))
            .collect();
        let names = Arc::new(names);
        let mut writers = Vec::new();
        for w in 0..5 {
            let (mut c, names) = (c.clone(), names.clone());
            writers.push(tokio::spawn(async move {
                for name in names.iter().skip(w).step_by(5) {
                    c.lb.create_load_balancer(fixtures::lb(name, "pager"))
                        .await?;
                }
                Ok::<_, tonic::Status>(())
            }));
        }
        for w in writers {
            w.await??;
        }
        let mut c = c;
        c.lb.create_load_balancer(fixtures::lb("lb-000", "other-org"))
            .await?;

        let mut seen = Vec::new();
        let mut token = String::new();
        let mut pages = Vec::new();
        loop {
            let page =
                c.lb.list_load_balancers(pb::ListLoadBalancersRequest {
                    org_id: "pager".into(),
                    limit: 100,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            assert_eq!(page.total_count, 250);
            pages.push(page.load_balancers.len());
            seen.extend(page.load_balancers.into_iter().map(|lb| lb.name));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
            assert!(pages.len() < 10, "pagination does not terminate");
        }
        assert_eq!(pages, [100, 100, 50]);
        let expected: Vec<String> = (0..250).map(|i| format!("lb-{i:03}")).collect();
        assert_eq!(seen, expected, "every name exactly once, sorted by name");
        assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 250);

        for garbage in ["%%%not-a-token%%%", "!"] {
            let r =
                c.lb.list_load_balancers(pb::ListLoadBalancersRequest {
                    org_id: "pager".into(),
                    page_token: garbage.into(),
                    ..Default::default()
                })
                .await;
            expect_err(r, Code::InvalidArgument, "INVALID_ARGUMENT");
        }

        let prefixed =
            c.lb.list_load_balancers(pb::ListLoadBalancersRequest {
                org_id: "pager".into(),
                name_filter: Some("lb-1".into()),
                limit: 1000,
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(prefixed.total_count, 100);
        assert!(prefixed
            .load_balancers
            .iter()
            .all(|lb| lb.name.starts_with("lb-1")));
        let few =
            c.lb.list_load_balancers(pb::ListLoadBalancersRequest {
                org_id: "pager".into(),
                name_filter: Some("lb-24".into()),
                ..Default::default()
            })
            .await?
            .into_inner();
        let names: Vec<String> = few.load_balancers.into_iter().map(|lb| lb.name).collect();
        assert_eq!(
            names,
            (240..250).map(|i| format!("lb-{i}")).collect::<Vec<_>>()
        );
        let default_limit =
            c.lb.list_load_balancers(pb::ListLoadBalancersRequest {
                org_id: "pager".into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(default_limit.load_balancers.len(), 100, "default page size");
        assert!(!default_limit.next_page_token.is_empty());
        Ok(())
    })
    .await
}

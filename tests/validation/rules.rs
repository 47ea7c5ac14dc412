//! Routing rules: conditions and actions that must be refused.

use fiberlb_proto::v1 as pb;
use fiberlb_tests::fixtures::{self, Graph};
use fiberlb_tests::{bounded, expect_err, Code, Node};
use pb::rule_action::Action;
use pb::rule_condition::Condition;
use pb::ListenerProtocol as P;

pub(crate) fn rule_with(cond: Option<Condition>, action: Action) -> pb::RoutingRule {
    pb::RoutingRule {
        name: "r".into(),
        priority: 1,
        conditions: cond
            .into_iter()
            .map(|c| pb::RuleCondition { condition: Some(c) })
            .collect(),
        action: Some(pb::RuleAction {
            action: Some(action),
        }),
        enabled: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_rule_validation() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut c = node.admin()?;
    bounded(async {
        let Graph { lb, pool, .. } = fixtures::graph(&mut c, "rules", "acme").await?;
        let l = c
            .listener
            .create_listener(fixtures::listener(&lb.id, "http", P::Http, 80))
            .await?
            .into_inner();
        let fixed = || {
            Action::FixedResponse(pb::FixedResponseAction {
                status_code: 200,
                ..Default::default()
            })
        };
        let bad = [
            rule_with(
                Some(Condition::PathRegex(pb::PathRegexCondition {
                    pattern: "(unclosed".into(),
                })),
                fixed(),
            ),
            rule_with(
                Some(Condition::PathRegex(pb::PathRegexCondition {
                    pattern: String::new(),
                })),
                fixed(),
            ),
            rule_with(
                Some(Condition::SourceIp(pb::SourceIpCondition {
                    cidrs: vec!["10.0.0.0/33".into()],
                })),
                fixed(),
            ),
            rule_with(
                Some(Condition::SourceIp(pb::SourceIpCondition {
                    cidrs: vec!["not-a-cidr".into()],
                })),
                fixed(),
            ),
            rule_with(
                Some(Condition::PathPrefix(pb::PathPrefixCondition {
                    value: "no-slash".into(),
                })),
                fixed(),
            ),
            rule_with(
                Some(Condition::HostHeader(pb::HostHeaderCondition {
                    values: vec!["bad host".into()],
                })),
                fixed(),
            ),
            rule_with(
                Some(Condition::Header(pb::HeaderCondition {
                    name: "bad header".into(),
                    values: vec!["v".into()],
                })),
                fixed(),
            ),
            rule_with(
                Some(Condition::Method(pb::MethodCondition { methods: vec![] })),
                fixed(),
            ),
            rule_with(
                None,
                Action::Redirect(pb::RedirectAction {
                    url: "https://example.com/".into(),
                    status_code: 303,
                }),
            ),
            rule_with(
                None,
                Action::Redirect(pb::RedirectAction {
                    url: String::new(),
                    status_code: 301,
                }),
            ),
            rule_with(
                None,
                Action::FixedResponse(pb::FixedResponseAction {
                    status_code: 99,
                    ..Default::default()
                }),
            ),
            pb::RoutingRule {
                action: None,
                ..rule_with(None, fixed())
            },
            pb::RoutingRule {
                name: "Bad Name".into(),
                ..rule_with(None, fixed())
            },
        ];
        for r in bad {
            let res = c
                .listener
                .add_routing_rule(pb::AddRoutingRuleRequest {
                    listener_id: l.id.clone(),
                    rule: Some(r.clone()),
                    revision: None,
                })
                .await;
            let code = if r.name == "Bad Name" {
                "INVALID_NAME"
            } else {
                "INVALID_ARGUMENT"
            };
            expect_err(res, Code::InvalidArgument, code);
        }
        // Forwarding needs a pool of the same load balancer.
        let other = fixtures::graph(&mut c, "rules-2", "acme").await?;
        for pool_id in ["no-such-pool".to_string(), other.pool.id.clone()] {
            let r = rule_with(
                None,
                Action::ForwardToPool(pb::ForwardToPoolAction { pool_id }),
            );
            let res = c
                .listener
                .add_routing_rule(pb::AddRoutingRuleRequest {
                    listener_id: l.id.clone(),
                    rule: Some(r),
                    revision: None,
                })
                .await;
            expect_err(res, Code::NotFound, "POOL_NOT_FOUND");
        }
        let ok = rule_with(
            None,
            Action::ForwardToPool(pb::ForwardToPoolAction {
                pool_id: pool.id.clone(),
            }),
        );
        let with_rule = c
            .listener
            .add_routing_rule(pb::AddRoutingRuleRequest {
                listener_id: l.id.clone(),
                rule: Some(ok.clone()),
                revision: None,
            })
            .await?
            .into_inner();
        let dup = c
            .listener
            .add_routing_rule(pb::AddRoutingRuleRequest {
                listener_id: l.id.clone(),
                rule: Some(ok),
                revision: None,
            })
            .await;
        expect_err(dup, Code::AlreadyExists, "RULE_ALREADY_EXISTS");
        // The untouched listener still has exactly its one good rule.
        let now = c
            .listener
            .get_listener(pb::GetListenerRequest {
                listener_id: l.id.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(now, with_rule);
        Ok(())
    })
    .await
}

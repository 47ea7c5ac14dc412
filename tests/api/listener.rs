//! Listeners and their routing rules (every condition kind, every action kind).

use fiberlb_proto::v1 as pb;
use fiberlb_tests::fixtures;
use fiberlb_tests::{bounded, expect_err, Code, Node};
use pb::rule_action::Action;
use pb::rule_condition::Condition;

fn cond(c: Condition) -> pb::RuleCondition {
    pb::RuleCondition { condition: Some(c) }
}

fn every_condition() -> Vec<pb::RuleCondition> {
    vec![
        cond(Condition::HostHeader(pb::HostHeaderCondition {
            values: vec!["api.example.com".into(), "*.example.org".into()],
        })),
        cond(Condition::PathPrefix(pb::PathPrefixCondition {
            value: "/api/".into(),
        })),
        cond(Condition::PathExact(pb::PathExactCondition {
            value: "/api/v1/health".into(),
        })),
        cond(Condition::PathRegex(pb::PathRegexCondition {
            pattern: "^/api/v[0-9]+/".into(),
        })),
        cond(Condition::Header(pb::HeaderCondition {
            name: "x-env".into(),
            values: vec!["prod".into(), "canary".into()],
        })),
        cond(Condition::Method(pb::MethodCondition {
            methods: vec![pb::HttpMethod::Get as i32, pb::HttpMethod::Post as i32],
        })),
        cond(Condition::QueryParam(pb::QueryParamCondition {
            name: "version".into(),
            value: "2".into(),
        })),
        cond(Condition::SourceIp(pb::SourceIpCondition {
            cidrs: vec!["10.0.0.0/8".into(), "2001:db8::/32".into()],
        })),
    ]
}

fn rule(
    name: &str,
    priority: u32,
    conditions: Vec<pb::RuleCondition>,
    action: Action,
) -> pb::RoutingRule {
    pb::RoutingRule {
        id: String::new(),
        name: name.into(),
        priority,
        conditions,
        action: Some(pb::RuleAction {
            action: Some(action),
        }),
        enabled: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_lifecycle_with_routing_rules() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut c = node.admin()?;
    bounded(async {
        let lb =
            c.lb.create_load_balancer(fixtures::lb("rules", "acme"))
                .await?
                .into_inner();
        let app = c
            .pool
            .create_pool(fixtures::pool(&lb.id, "app"))
            .await?
            .into_inner();
        let api = c
            .pool
            .create_pool(fixtures::pool(&lb.id, "api"))
            .await?
            .into_inner();

        let created = c
            .listener
            .create_listener(pb::CreateListenerRequest {
                default_pool_id: Some(app.id.clone()),
                connection_limit: Some(1000),
                timeout_client: Some(30_000),
                timeout_backend: Some(10_000),
                ..fixtures::listener(&lb.id, "http", pb::ListenerProtocol::Http, 8080)
            })
            .await?
            .into_inner();
        assert_eq!(created.protocol, pb::ListenerProtocol::Http as i32);
        assert_eq!(
            (
                created.port,
                created.timeout_client,
                created.timeout_backend
            ),
            (8080, 30_000, 10_000)
        );
        assert_eq!(created.connection_limit, Some(1000));
        assert_eq!(created.default_pool_id.as_deref(), Some(app.id.as_str()));
        assert!(created.enabled && created.rules.is_empty());
        let got = c
            .listener
            .get_listener(pb::GetListenerRequest {
                listener_id: created.id.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(got, created);

        let updated = c
            .listener
            .update_listener(pb::UpdateListenerRequest {
                listener_id: created.id.clone(),
                name: Some("http-alt".into()),
                port: Some(8081),
                connection_limit: Some(0),
                timeout_backend: Some(5_000),
                enabled: Some(false),
                revision: Some(created.revision),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(
            (updated.name.as_str(), updated.port, updated.timeout_backend),
            ("http-alt", 8081, 5_000)
        );
        assert_eq!(updated.connection_limit, None, "0 clears the limit");
        assert!(!updated.enabled);
        assert!(updated.revision > created.revision);

        let udp = c
            .listener
            .create_listener(fixtures::listener(
                &lb.id,
                "dns",
                pb::ListenerProtocol::Udp,
                53,
            ))
            .await?
            .into_inner();
        let all = c
            .listener
            .list_listeners(pb::ListListenersRequest {
                lb_id: lb.id.clone(),
                ..Default::default()
            })
            .await?;
        let names: Vec<String> = all
            .into_inner()
            .listeners
            .into_iter()
            .map(|l| l.name)
            .collect();
        assert_eq!(names, ["dns", "http-alt"]);
        let only_udp = c
            .listener
            .list_listeners(pb::ListListenersRequest {
                lb_id: lb.id.clone(),
                protocol_filter: Some(pb::ListenerProtocol::Udp as i32),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(only_udp.total_count, 1);
        assert_eq!(only_udp.listeners[0].id, udp.id);

        // One rule per action kind; the first carries every condition kind.
        let forward = Action::ForwardToPool(pb::ForwardToPoolAction {
            pool_id: api.id.clone(),
        });
        let redirect = Action::Redirect(pb::RedirectAction {
            url: "https://example.com/new".into(),
            status_code: 301,
        });
        let fixed = Action::FixedResponse(pb::FixedResponseAction {
            status_code: 503,
            content_type: "application/json".into(),
            body: "{\"down\":true}".into(),
        });
        let l = c
            .listener
            .add_routing_rule(pb::AddRoutingRuleRequest {
                listener_id: created.id.clone(),
                rule: Some(rule("to-api", 10, every_condition(), forward.clone())),
                revision: None,
            })
            .await?
            .into_inner();
        assert_eq!(l.rules.len(), 1);
        let r0 = &l.rules[0];
        assert!(!r0.id.is_empty(), "the server assigns rule ids");
        assert_eq!(
            r0.conditions,
            every_condition(),
            "every condition kind round-trips"
        );
        assert_eq!(
            r0.action.as_ref().and_then(|a| a.action.clone()),
            Some(forward)
        );
        let path_cond = vec![cond(Condition::PathPrefix(pb::PathPrefixCondition {
            value: "/old/".into(),
        }))];
        let l = c
            .listener
            .add_routing_rule(pb::AddRoutingRuleRequest {
                listener_id: created.id.clone(),
                rule: Some(rule("moved", 5, path_cond.clone(), redirect.clone())),
                revision: Some(l.revision),
            })
            .await?
            .into_inner();
        assert_eq!(l.rules.len(), 2);
        let l = c
            .listener
            .add_routing_rule(pb::AddRoutingRuleRequest {
                listener_id: created.id.clone(),
                rule: Some(rule("maintenance", 20, Vec::new(), fixed.clone())),
                revision: None,
            })
            .await?
            .into_inner();
        let order: Vec<&str> = l.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            order,
            ["moved", "to-api", "maintenance"],
            "rules are kept in priority order"
        );
        assert_eq!(
            l.rules[0].action.as_ref().and_then(|a| a.action.clone()),
            Some(redirect)
        );
        assert_eq!(
            l.rules[2].action.as_ref().and_then(|a| a.action.clone()),
            Some(fixed)
        );

        // Updating a rule keeps its id; removing it drops it.
        let moved_id = l.rules[0].id.clone();
        let l = c
            .listener
            .update_routing_rule(pb::UpdateRoutingRuleRequest {
                listener_id: created.id.clone(),
                rule_id: moved_id.clone(),
                rule: Some(rule(
                    "moved",
                    30,
                    path_cond,
                    Action::ForwardToPool(pb::ForwardToPoolAction {
                        pool_id: app.id.clone(),
                    }),
                )),
                revision: None,
            })
            .await?
            .into_inner();
        let moved = l
            .rules
            .iter()
            .find(|r| r.id == moved_id)
            .expect("updated rule keeps its id");
        assert_eq!(moved.priority, 30);
        assert_eq!(
            l.rules.last().map(|r| r.id.as_str()),
            Some(moved_id.as_str())
        );
        let l = c
            .listener
            .remove_routing_rule(pb::RemoveRoutingRuleRequest {
                listener_id: created.id.clone(),
                rule_id: moved_id.clone(),
                revision: None,
            })
            .await?
            .into_inner();
        assert_eq!(l.rules.len(), 2);
        let again = c
            .listener
            .remove_routing_rule(pb::RemoveRoutingRuleRequest {
                listener_id: created.id.clone(),
                rule_id: moved_id,
                revision: None,
            })
            .await;
        expect_err(again, Code::NotFound, "RULE_NOT_FOUND");
        let persisted = c
            .listener
            .get_listener(pb::GetListenerRequest {
                listener_id: created.id.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(persisted, l);

        // A rule on a plain TCP/UDP listener makes no sense.
        let on_udp = c
            .listener
            .add_routing_rule(pb::AddRoutingRuleRequest {
                listener_id: udp.id.clone(),
                rule: Some(rule(
                    "nope",
                    1,
                    Vec::new(),
                    Action::ForwardToPool(pb::ForwardToPoolAction {
                        pool_id: app.id.clone(),
                    }),
                )),
                revision: None,
            })
            .await;
        expect_err(on_udp, Code::InvalidArgument, "INVALID_ARGUMENT");

        let del = c
            .listener
            .delete_listener(pb::DeleteListenerRequest {
                listener_id: created.id.clone(),
                revision: None,
            })
            .await?;
        assert_eq!(del.into_inner().listener_id, created.id);
        let gone = c
            .listener
            .get_listener(pb::GetListenerRequest {
                listener_id: created.id,
            })
            .await;
        expect_err(gone, Code::NotFound, "LISTENER_NOT_FOUND");
        Ok(())
    })
    .await
}

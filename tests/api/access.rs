//! Access tokens and API keys: create, list, whoami, revoke.

use fiberlb_proto::v1 as pb;
use fiberlb_tests::fixtures;
use fiberlb_tests::{bounded, expect_err, Code, Credential, Node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens_create_list_whoami_revoke() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut admin = node.admin()?;
    bounded(async {
        let me = admin
            .access
            .who_am_i(pb::WhoAmIRequest {})
            .await?
            .into_inner();
        assert_eq!(
            (me.name.as_str(), me.principal.as_str(), me.org_id.as_str()),
            ("bootstrap-admin", "admin", "")
        );
        assert_eq!(me.actions, ["fiberlb:*"]);

        let (ops, ops_secret) =
            fixtures::token(&mut admin, "ops", "acme", None, &["fiberlb:*"]).await?;
        assert!(ops_secret.starts_with("fblb_"), "{ops_secret}");
        assert_eq!(
            (ops.org_id.as_str(), ops.principal.as_str(), ops.revoked),
            ("acme", "user-ops", false)
        );
        assert_eq!(ops.created_by, "admin");
        let mut as_ops = node.clients(Credential::Bearer(ops_secret.clone()))?;
        let who = as_ops
            .access
            .who_am_i(pb::WhoAmIRequest {})
            .await?
            .into_inner();
        assert_eq!(who.id, ops.id);
        assert!(
            !format!("{who:?}").contains(&ops_secret),
            "the secret is shown only on creation"
        );

        // An API key is presented as x-api-key.
        let key = admin
            .access
            .create_token(pb::CreateTokenRequest {
                name: "ci".into(),
                principal: "ci-bot".into(),
                org_id: "acme".into(),
                project_id: Some("shop".into()),
                actions: vec!["fiberlb:loadbalancers:*".into()],
                kind: pb::CredentialKind::ApiKey as i32,
                ttl_seconds: Some(3600),
            })
            .await?
            .into_inner();
        let key_token = key.token.clone().expect("token record");
        assert_eq!(key_token.kind, pb::CredentialKind::ApiKey as i32);
        assert!(key_token
            .expires_at
            .is_some_and(|e| e > key_token.created_at));
        let mut as_key = node.clients(Credential::ApiKey(key.secret.clone()))?;
        assert_eq!(
            as_key
                .access
                .who_am_i(pb::WhoAmIRequest {})
                .await?
                .into_inner()
                .id,
            key_token.id
        );

        let all = admin
            .access
            .list_tokens(pb::ListTokensRequest::default())
            .await?
            .into_inner();
        let names: Vec<&str> = all.tokens.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["bootstrap-admin", "ci", "ops"]);
        assert_eq!(all.total_count, 3);
        let acme = admin
            .access
            .list_tokens(pb::ListTokensRequest {
                org_id: Some("acme".into()),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(acme.total_count, 2);
        // An org token sees its org's tokens only.
        let seen = as_ops
            .access
            .list_tokens(pb::ListTokensRequest::default())
            .await?
            .into_inner();
        let names: Vec<&str> = seen.tokens.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["ci", "ops"]);

        let revoked = admin
            .access
            .revoke_token(pb::RevokeTokenRequest {
                token_id: ops.id.clone(),
            })
            .await?
            .into_inner();
        assert!(revoked.revoked);
        let after = as_ops.access.who_am_i(pb::WhoAmIRequest {}).await;
        expect_err(after, Code::Unauthenticated, "UNAUTHENTICATED");
        let after = as_ops
            .lb
            .list_load_balancers(pb::ListLoadBalancersRequest::default())
            .await;
        expect_err(after, Code::Unauthenticated, "UNAUTHENTICATED");
        let missing = admin
            .access
            .revoke_token(pb::RevokeTokenRequest {
                token_id: "no-such-token".into(),
            })
            .await;
        expect_err(missing, Code::NotFound, "TOKEN_NOT_FOUND");

        let mut garbage = node.clients(Credential::Bearer("fblb_not-a-real-secret".into()))?;
        let res = garbage.access.who_am_i(pb::WhoAmIRequest {}).await;
        expect_err(res, Code::Unauthenticated, "UNAUTHENTICATED");
        Ok(())
    })
    .await
}

use crate::common::*;

#[tokio::test]
async fn forwards_with_forwarding_headers_and_request_id() -> anyhow::Result<()> {
    bounded(async {
        let b = HttpBackend::start("app").await?;
        let mut lb = start().await?;
        let pool = lb.pool("app", &[b.addr]).await?;
        let (_, addr) = lb.http_listener(Some(&pool)).await?;

        let r = get(
            addr,
            "www.example.com",
            "/hello?x=1",
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("connection", "x-secret"),
                ("x-secret", "s"),
                ("x-client-cert-subject", "CN=root"),
            ],
        )
        .await?;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "app");
        let id = r.header("x-request-id").to_string();
        assert_eq!(id.len(), 36, "generated UUID request id on the response");
        let seen = b.last().expect("backend saw the request");
        assert_eq!(seen.uri, "/hello?x=1");
        let h = |n: &str| {
            seen.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        assert_eq!(
            h("x-forwarded-for"),
            format!("203.0.113.9, {}", "127.0.0.1")
        );
        assert_eq!(h("x-forwarded-proto"), "http");
        assert_eq!(h("x-forwarded-host"), "www.example.com");
        assert_eq!(h("host"), "www.example.com");
        assert_eq!(h("x-request-id"), id);
        assert!(
            !seen.headers.contains_key("x-secret"),
            "Connection-named header forwarded"
        );
        assert!(
            !seen.headers.contains_key("x-client-cert-subject"),
            "client-supplied cert subject forwarded"
        );

        // A client's own request id is propagated both ways.
        let r = get(
            addr,
            "www.example.com",
            "/",
            &[("x-request-id", "trace-42")],
        )
        .await?;
        assert_eq!(r.header("x-request-id"), "trace-42");
        assert_eq!(b.last().unwrap().headers["x-request-id"], "trace-42");

        // POST bodies stream through; HTTP/1.0 works too.
        let s = TcpStream::connect(addr).await?;
        let r = send_on(
            s,
            false,
            request("POST", "www.example.com", "/echo", &[], "ping-body", false),
        )
        .await?;
        assert_eq!(r.text(), "ping-body");
        let text = raw(addr, b"GET / HTTP/1.0\r\nHost: old\r\n\r\n").await?;
        assert!(
            text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
            "{text}"
        );
        assert!(text.ends_with("app"), "{text}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn keep_alive_and_pipelining() -> anyhow::Result<()> {
    bounded(async {
        let b = HttpBackend::start("ka").await?;
        let mut lb = start().await?;
        let pool = lb.pool("ka", &[b.addr]).await?;
        let (_, addr) = lb.http_listener(Some(&pool)).await?;
        let mut s = TcpStream::connect(addr).await?;
        let one = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
        s.write_all(
            format!("{one}{one}GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await??;
        let text = String::from_utf8_lossy(&out);
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 3, "{text}");
        assert_eq!(b.hits(), 3);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn rules_route_by_every_condition_and_action() -> anyhow::Result<()> {
    bounded(async {
        let names = [
            "default", "host", "wild", "prefix", "exact", "regex", "header", "method", "query",
            "source", "and",
        ];
        let mut backends = HashMap::new();
        let mut lb = start().await?;
        let mut pools = HashMap::new();
        for n in names {
            let b = HttpBackend::start(n).await?;
            pools.insert(n, lb.pool(n, &[b.addr]).await?);
            backends.insert(n, b);
        }
        let (l, addr) = lb.http_listener(Some(&pools["default"])).await?;
        lb.rule(
            &l,
            "host",
            10,
            vec![host("api.example.com")],
            forward(&pools["host"]),
        )
        .await?;
        lb.rule(
            &l,
            "wild",
            11,
            vec![host("*.wild.example.com")],
            forward(&pools["wild"]),
        )
        .await?;
        lb.rule(
            &l,
            "exact",
            20,
            vec![Condition::PathExact(pb::PathExactCondition {
                value: "/exact".into(),
            })],
            forward(&pools["exact"]),
        )
        .await?;
        lb.rule(
            &l,
            "prefix",
            21,
            vec![Condition::PathPrefix(pb::PathPrefixCondition {
                value: "/static/".into(),
            })],
            forward(&pools["prefix"]),
        )
        .await?;
        lb.rule(
            &l,
            "regex",
            22,
            vec![Condition::PathRegex(pb::PathRegexCondition {
                pattern: "^/v[0-9]+/items$".into(),
            })],
            forward(&pools["regex"]),
        )
        .await?;
        lb.rule(
            &l,
            "header",
            30,
            vec![Condition::Header(pb::HeaderCondition {
                name: "x-canary".into(),
                values: vec!["yes".into()],
            })],
            forward(&pools["header"]),
        )
        .await?;
        lb.rule(
            &l,
            "method",
            31,
            vec![Condition::Method(pb::MethodCondition {
                methods: vec![pb::HttpMethod::Delete as i32],
            })],
            forward(&pools["method"]),
        )
        .await?;
        lb.rule(
            &l,
            "query",
            32,
            vec![Condition::QueryParam(pb::QueryParamCondition {
                name: "beta".into(),
                value: "1".into(),
            })],
            forward(&pools["query"]),
        )
        .await?;
        lb.rule(
            &l,
            "source",
            33,
            vec![Condition::SourceIp(pb::SourceIpCondition {
                cidrs: vec!["10.0.0.0/8".into()],
            })],
            forward(&pools["default"]),
        )
        .await?;
        lb.rule(
            &l,
            "source-local",
            34,
            vec![
                Condition::SourceIp(pb::SourceIpCondition {
                    cidrs: vec!["127.0.0.0/8".into()],
                }),
                Condition::PathPrefix(pb::PathPrefixCondition {
                    value: "/local".into(),
                }),
            ],
            forward(&pools["source"]),
        )
        .await?;
        lb.rule(
            &l,
            "and",
            35,
            vec![
                host("and.example.com"),
                Condition::PathPrefix(pb::PathPrefixCondition {
                    value: "/both".into(),
                }),
            ],
            forward(&pools["and"]),
        )
        .await?;
        lb.rule(
            &l,
            "redirect",
            40,
            vec![Condition::PathPrefix(pb::PathPrefixCondition {
                value: "/old".into(),
            })],
            Action::Redirect(pb::RedirectAction {
                url: "https://new.example.com/".into(),
                status_code: 308,
            }),
        )
        .await?;
        lb.rule(
            &l,
            "fixed",
            41,
            vec![Condition::PathExact(pb::PathExactCondition {
                value: "/maintenance".into(),
            })],
            Action::FixedResponse(pb::FixedResponseAction {
                status_code: 503,
                content_type: "text/html".into(),
                body: "<h1>later</h1>".into(),
            }),
        )
        .await?;
        // A lower priority number wins over a later rule matching the same request.
        lb.rule(
            &l,
            "shadowed",
            50,
            vec![host("api.example.com")],
            forward(&pools["default"]),
        )
        .await?;

        let cases: &[Case] = &[
            ("GET", "api.example.com", "/x", &[], "host"),
            ("GET", "API.Example.com:8080", "/x", &[], "host"),
            ("GET", "a.wild.example.com", "/", &[], "wild"),
            ("GET", "a.b.wild.example.com", "/", &[], "default"),
            ("GET", "x", "/exact", &[], "exact"),
            ("GET", "x", "/exact/no", &[], "default"),
            ("GET", "x", "/static/app.js", &[], "prefix"),
            ("GET", "x", "/v2/items", &[], "regex"),
            ("GET", "x", "/v2/items/1", &[], "default"),
            ("GET", "x", "/", &[("x-canary", "yes")], "header"),
            ("GET", "x", "/", &[("x-canary", "no")], "default"),
            ("DELETE", "x", "/thing", &[], "method"),
            ("GET", "x", "/search?q=a&beta=1", &[], "query"),
            ("GET", "x", "/search?beta=2", &[], "default"),
            ("GET", "x", "/local/x", &[], "source"),
            ("GET", "and.example.com", "/both", &[], "and"),
            ("GET", "and.example.com", "/other", &[], "default"),
        ];
        // The rules apply once the listener's snapshot carries them all.
        eventually("rules applied", || async {
            Ok(get(addr, "x", "/maintenance", &[]).await?.status == 503)
        })
        .await?;
        for (method, h, path, headers, want) in cases {
            let s = TcpStream::connect(addr).await?;
            let r = send_on(s, false, request(method, h, path, headers, "", false)).await?;
            assert_eq!(
                (r.status.as_u16(), r.header("x-backend")),
                (200, *want),
                "{method} {h} {path} {headers:?}"
            );
        }
        let r = get(addr, "x", "/old/page", &[]).await?;
        assert_eq!(
            (r.status.as_u16(), r.header("location")),
            (308, "https://new.example.com/")
        );
        let r = get(addr, "x", "/maintenance", &[]).await?;
        assert_eq!(
            (
                r.status.as_u16(),
                r.header("content-type"),
                r.text().as_str()
            ),
            (503, "text/html", "<h1>later</h1>")
        );

        // No rule and no default pool: 404.
        let (_, bare) = lb.http_listener(None).await?;
        assert_eq!(get(bare, "x", "/", &[]).await?.status, 404);
        Ok(())
    })
    .await
}

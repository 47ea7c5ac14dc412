//! Checks on values serde accepts but the node cannot run with. Run once, after all
//! layers are merged, so a bad value is reported before anything starts listening.

use super::checks::{
    check_cidr, check_endpoint, check_file, check_host_port, check_log_level, check_url, clash,
    usable_ip,
};
use super::cluster::{check_node_id, parse_community};
use super::error::SettingsError;
use super::server::StorageBackend;
use super::Settings;

type Check = Result<(), SettingsError>;

/// `Err(invalid(key, msg))` unless `ok`.
fn ensure(ok: bool, key: &str, message: impl FnOnce() -> String) -> Check {
    if ok {
        Ok(())
    } else {
        Err(SettingsError::invalid(key, message()))
    }
}

fn at(key: &str) -> impl FnOnce(String) -> SettingsError + '_ {
    move |message| SettingsError::invalid(key, message)
}

impl Settings {
    /// Checks every section and the rules between sections. Errors name the dotted key;
    /// [`super::load()`] adds where the value came from.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.check_server()?;
        self.check_storage()?;
        self.check_proxy()?;
        self.check_defaults()?;
        self.check_integrations()?;
        check_log_level(&self.logging.level).map_err(at("logging.level"))?;
        ensure(
            !self.logging.access_log.contains('\0'),
            "logging.access_log",
            || "must be \"stdout\", \"off\" or a file path".to_owned(),
        )?;
        optional_file(
            "admin.bootstrap_token_file",
            &self.admin.bootstrap_token_file,
        )?;
        self.check_cluster()?;
        self.check_bgp()
    }

    fn check_server(&self) -> Check {
        let s = &self.server;
        ensure(
            !clash(s.grpc_addr, s.metrics_addr),
            "server.metrics_addr",
            || format!("{} is also server.grpc_addr", s.metrics_addr),
        )?;
        let tls = &s.tls;
        ensure(
            tls.cert_file.is_some() == tls.key_file.is_some(),
            "server.tls.key_file",
            || "server.tls.cert_file and server.tls.key_file must be set together".to_owned(),
        )?;
        ensure(
            tls.ca_file.is_none() || tls.cert_file.is_some(),
            "server.tls.ca_file",
            || {
                "client certificates need server TLS: set server.tls.cert_file and key_file"
                    .to_owned()
            },
        )?;
        optional_file("server.tls.cert_file", &tls.cert_file)?;
        optional_file("server.tls.key_file", &tls.key_file)?;
        optional_file("server.tls.ca_file", &tls.ca_file)
    }

    fn check_storage(&self) -> Check {
        let s = &self.storage;
        ensure(
            !s.data_dir.as_os_str().is_empty(),
            "storage.data_dir",
            || "must not be empty".to_owned(),
        )?;
        ensure(
            s.backend != StorageBackend::Chainfire || !s.chainfire_endpoints.is_empty(),
            "storage.chainfire_endpoints",
            || "at least one endpoint is required when storage.backend = \"chainfire\"".into(),
        )?;
        for (i, endpoint) in s.chainfire_endpoints.iter().enumerate() {
            check_endpoint(endpoint).map_err(at(&format!("storage.chainfire_endpoints[{i}]")))?;
        }
        ensure(
            s.chainfire_username.is_some() == s.chainfire_password_file.is_some(),
            "storage.chainfire_password_file",
            || "chainfire_username and chainfire_password_file must be set together".into(),
        )?;
        if let Some(user) = &s.chainfire_username {
            ensure(
                !user.trim().is_empty(),
                "storage.chainfire_username",
                || "must not be empty".to_owned(),
            )?;
        }
        optional_file(
            "storage.chainfire_password_file",
            &s.chainfire_password_file,
        )?;
        optional_file("storage.chainfire_ca_file", &s.chainfire_ca_file)
    }

    fn check_proxy(&self) -> Check {
        let p = &self.proxy;
        let positive = [
            ("proxy.connection_timeout_ms", p.connection_timeout_ms),
            (
                "proxy.http_idle_timeout_seconds",
                p.http_idle_timeout_seconds,
            ),
            ("proxy.header_read_timeout_ms", p.header_read_timeout_ms),
            (
                "proxy.tls.session_timeout_seconds",
                p.tls.session_timeout_seconds,
            ),
        ];
        for (key, value) in positive {
            ensure(value > 0, key, || "must be greater than 0".to_owned())?;
        }
        in_range(
            "proxy.max_header_size_bytes",
            p.max_header_size_bytes,
            1024,
            1 << 20,
        )?;
        in_range("proxy.worker_threads", p.worker_threads, 0, 1024)?;
        in_range("proxy.recv_buffer_size", p.recv_buffer_size, 1024, 64 << 20)?;
        in_range("proxy.send_buffer_size", p.send_buffer_size, 1024, 64 << 20)?;
        in_range(
            "proxy.tls.session_timeout_seconds",
            p.tls.session_timeout_seconds,
            1,
            604_800,
        )?;
        if let Some(ip) = p.bind_address {
            ensure(!ip.is_multicast(), "proxy.bind_address", || {
                format!("{ip} is a multicast address")
            })?;
        }
        Ok(())
    }

    fn check_defaults(&self) -> Check {
        let h = &self.health_check;
        ensure(
            h.default_interval_seconds >= 1,
            "health_check.default_interval_seconds",
            || "must be at least 1".to_owned(),
        )?;
        in_range(
            "health_check.default_timeout_seconds",
            h.default_timeout_seconds,
            1,
            h.default_interval_seconds.max(1),
        )?;
        let at_least_one = [
            (
                "health_check.default_healthy_threshold",
                u64::from(h.default_healthy_threshold),
            ),
            (
                "health_check.default_unhealthy_threshold",
                u64::from(h.default_unhealthy_threshold),
            ),
            (
                "health_check.max_concurrent_checks",
                h.max_concurrent_checks as u64,
            ),
            (
                "circuit_breaker.default_failure_threshold",
                u64::from(self.circuit_breaker.default_failure_threshold),
            ),
            (
                "circuit_breaker.default_success_threshold",
                u64::from(self.circuit_breaker.default_success_threshold),
            ),
            (
                "circuit_breaker.default_timeout_seconds",
                self.circuit_breaker.default_timeout_seconds,
            ),
        ];
        for (key, value) in at_least_one {
            ensure(value >= 1, key, || "must be at least 1".to_owned())?;
        }
        in_range(
            "health_check.check_jitter_percent",
            h.check_jitter_percent,
            0,
            100,
        )
    }

    fn check_integrations(&self) -> Check {
        let urls = [
            ("iam.endpoint", &self.iam.endpoint),
            ("plasmavmc.endpoint", &self.plasmavmc.endpoint),
            ("flashdns.endpoint", &self.flashdns.endpoint),
        ];
        for (key, url) in urls {
            if let Some(url) = url {
                check_url(url).map_err(at(key))?;
            }
        }
        ensure(
            !self.iam.service_account.trim().is_empty(),
            "iam.service_account",
            || "must not be empty".to_owned(),
        )?;
        optional_file("iam.token_path", &self.iam.token_path)?;
        if let Some(dns) = self.flashdns.dns_addr {
            ensure(
                dns.port() != 0 && !dns.ip().is_unspecified(),
                "flashdns.dns_addr",
                || format!("{dns} is not a usable DNS server address"),
            )?;
        }
        Ok(())
    }

    fn check_cluster(&self) -> Check {
        let c = &self.cluster;
        check_node_id(&c.node_id).map_err(at("cluster.node_id"))?;
        ensure(
            c.gossip_addr.is_none() || c.key_file.is_some(),
            "cluster.key_file",
            || {
                "gossip is authenticated: a key file is required when cluster.gossip_addr is set"
                    .to_owned()
            },
        )?;
        optional_file("cluster.key_file", &c.key_file)?;
        ensure(
            c.previous_key_file.is_none() || c.key_file.is_some(),
            "cluster.previous_key_file",
            || "a previous key is only used next to cluster.key_file; set that too".to_owned(),
        )?;
        optional_file("cluster.previous_key_file", &c.previous_key_file)?;
        if let Some(advertise) = c.advertise_addr {
            ensure(c.gossip_addr.is_some(), "cluster.advertise_addr", || {
                "set cluster.gossip_addr too (gossip is off without it)".to_owned()
            })?;
            ensure(
                !advertise.ip().is_unspecified() && advertise.port() != 0,
                "cluster.advertise_addr",
                || format!("{advertise} cannot be reached by other members"),
            )?;
        } else if let Some(gossip) = c.gossip_addr {
            ensure(
                !gossip.ip().is_unspecified(),
                "cluster.advertise_addr",
                || {
                    format!(
                    "cluster.gossip_addr {gossip} is a wildcard: set the address members reach \
                     this node at"
                )
                },
            )?;
        }
        ensure(
            c.peers.is_empty() || c.gossip_addr.is_some(),
            "cluster.peers",
            || "peers are set but gossip is off: set cluster.gossip_addr".to_owned(),
        )?;
        for (i, peer) in c.peers.iter().enumerate() {
            check_host_port(peer).map_err(at(&format!("cluster.peers[{i}]")))?;
        }
        ensure(c.probe_replicas >= 1, "cluster.probe_replicas", || {
            "must be at least 1".to_owned()
        })?;
        if let Some(pool) = &c.vip_pool {
            check_cidr(pool).map_err(at("cluster.vip_pool"))?;
        }
        Ok(())
    }

    fn check_bgp(&self) -> Check {
        let b = &self.bgp;
        if b.enabled {
            ensure(b.asn != 0, "bgp.asn", || {
                "required when bgp.enabled = true".to_owned()
            })?;
            ensure(!b.peers.is_empty(), "bgp.peers", || {
                "at least one [[bgp.peers]] is required when bgp.enabled = true".to_owned()
            })?;
            ensure(b.effective_router_id().is_some(), "bgp.router_id", || {
                "required when bgp.enabled = true and neither bgp.listen nor bgp.next_hop is \
                 an IPv4 address"
                    .to_owned()
            })?;
        }
        ensure(b.asn != 23456, "bgp.asn", || {
            "23456 is AS_TRANS, not a real AS".to_owned()
        })?;
        if let Some(id) = b.router_id {
            ensure(
                !id.is_unspecified() && !id.is_broadcast(),
                "bgp.router_id",
                || format!("{id} is not a valid BGP identifier"),
            )?;
        }
        if let Some(listen) = b.listen {
            ensure(
                !clash(listen, self.server.grpc_addr) && !clash(listen, self.server.metrics_addr),
                "bgp.listen",
                || format!("{listen} is also the gRPC or metrics address"),
            )?;
        }
        if let Some(hop) = b.next_hop {
            ensure(usable_ip(hop), "bgp.next_hop", || {
                format!("{hop} cannot be a next hop")
            })?;
        }
        for (i, community) in b.communities.iter().enumerate() {
            parse_community(community).map_err(at(&format!("bgp.communities[{i}]")))?;
        }
        for (i, peer) in b.peers.iter().enumerate() {
            let key = |field: &str| format!("bgp.peers[{i}].{field}");
            ensure(usable_ip(peer.address), &key("address"), || {
                format!("{} is not a router address", peer.address)
            })?;
            let duplicate = b.peers[..i]
                .iter()
                .any(|p| p.address == peer.address && p.port == peer.port);
            ensure(!duplicate, &key("address"), || {
                format!("{} is listed twice", peer.address)
            })?;
            ensure(peer.port != 0, &key("port"), || "must not be 0".to_owned())?;
            ensure(peer.asn != 0 && peer.asn != 23456, &key("asn"), || {
                format!("{} is not a valid peer AS", peer.asn)
            })?;
            ensure(
                peer.hold_time == 0 || peer.hold_time >= 3,
                &key("hold_time"),
                || {
                    format!(
                        "{} is not 0 or 3..=65535 seconds (RFC 4271)",
                        peer.hold_time
                    )
                },
            )?;
            if let Some(password) = &peer.password {
                ensure(
                    !password.is_empty() && password.len() <= 80,
                    &key("password"),
                    || "a TCP MD5 password has 1..=80 bytes".to_owned(),
                )?;
            }
            ensure(!peer.passive || b.listen.is_some(), &key("passive"), || {
                "a passive peer needs bgp.listen to accept its connection".to_owned()
            })?;
        }
        Ok(())
    }
}

fn in_range<T: PartialOrd + std::fmt::Display>(key: &str, value: T, min: T, max: T) -> Check {
    ensure(value >= min && value <= max, key, || {
        format!("{value} is outside {min}..={max}")
    })
}

/// A file the node will read at start must be there now, not fail minutes later.
fn optional_file(key: &str, path: &Option<std::path::PathBuf>) -> Check {
    match path {
        Some(path) => check_file(path).map_err(at(key)),
        None => Ok(()),
    }
}

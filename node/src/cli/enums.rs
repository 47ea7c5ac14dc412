//! Enum values as users type and read them: lower-case names without the protobuf prefix
//! (`round_robin`, `tcp_tls`), shared by the flags (which also accept kebab-case), the
//! declarative document and the output renderer, so one spelling is used everywhere.

use fiberlb_proto::v1 as pv;

/// Defines a user-facing enum mirroring a protobuf enum (minus its `UNSPECIFIED` value).
/// Each variant gives its protobuf variant and its document name (snake_case); flags show
/// clap's kebab-case spelling and accept the snake_case one as an alias.
macro_rules! proto_enum {
    (
        $(#[$doc:meta])*
        $name:ident: $proto:ident {
            $( $(#[$vdoc:meta])* $var:ident => $pvar:ident, $snake:literal; )+
        }
    ) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize, clap::ValueEnum,
        )]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $(
                $(#[$vdoc])*
                #[value(alias = $snake)]
                $var,
            )+
        }

        impl $name {
            /// The protobuf value.
            pub fn to_proto(self) -> i32 {
                match self {
                    $( Self::$var => pv::$proto::$pvar as i32, )+
                }
            }

            /// The variant of a protobuf value; `None` for `UNSPECIFIED` and unknown values.
            pub fn from_proto(value: i32) -> Option<Self> {
                match pv::$proto::try_from(value).ok()? {
                    $( pv::$proto::$pvar => Some(Self::$var), )+
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }

            /// The document spelling (snake_case).
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$var => $snake, )+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

proto_enum! {
    /// PROXY protocol header sent to a pool's backends.
    ProxyProtocol: ProxyProtocol {
        /// No header.
        None => None, "none";
        /// Text header (v1).
        V1 => V1, "v1";
        /// Binary header (v2).
        V2 => V2, "v2";
    }
}

proto_enum! {
    /// Lifecycle state of a load balancer.
    LbStatus: LbStatus {
        /// Being provisioned.
        Creating => Creating, "creating";
        /// Operational.
        Active => Active, "active";
        /// A change is in progress.
        Updating => Updating, "updating";
        /// Failed; see the status message.
        Error => Error, "error";
        /// Being removed.
        Deleting => Deleting, "deleting";
        /// Disabled by an operator.
        Disabled => Disabled, "disabled";
    }
}

proto_enum! {
    /// What a listener speaks.
    Protocol: ListenerProtocol {
        /// L4 TCP.
        Tcp => Tcp, "tcp";
        /// L4 UDP.
        Udp => Udp, "udp";
        /// L7 HTTP.
        Http => Http, "http";
        /// L7 HTTPS (TLS terminated here).
        Https => Https, "https";
        /// TLS passthrough routed by SNI.
        TcpTls => TcpTls, "tcp_tls";
    }
}

proto_enum! {
    /// Lowest TLS version a listener accepts.
    TlsVersion: TlsVersion {
        /// TLS 1.2 and 1.3.
        Tls12 => Tls12, "tls12";
        /// TLS 1.3 only.
        Tls13 => Tls13, "tls13";
    }
}

proto_enum! {
    /// Whether HTTPS clients must present a certificate.
    ClientAuth: ClientAuthMode {
        /// Not asked for.
        None => None, "none";
        /// Verified when given.
        Optional => Optional, "optional";
        /// Required.
        Required => Required, "required";
    }
}

proto_enum! {
    /// Load-balancing algorithm of a pool.
    Algorithm: Algorithm {
        /// Round robin.
        RoundRobin => RoundRobin, "round_robin";
        /// Fewest active connections.
        LeastConnections => LeastConnections, "least_connections";
        /// Hash of the client address.
        IpHash => IpHash, "ip_hash";
        /// Power of two random choices.
        Random => Random, "random";
        /// Smooth weighted round robin.
        WeightedRoundRobin => WeightedRoundRobin, "weighted_round_robin";
        /// Lowest response-time average.
        LeastResponseTime => LeastResponseTime, "least_response_time";
        /// Fewest connections relative to weight.
        WeightedLeastConnections => WeightedLeastConnections, "weighted_least_connections";
        /// Maglev consistent hashing.
        Maglev => Maglev, "maglev";
    }
}

proto_enum! {
    /// Session persistence mode of a pool.
    Persistence: PersistenceMode {
        /// No persistence.
        None => None, "none";
        /// By client address.
        SourceIp => SourceIp, "source_ip";
        /// LB-inserted cookie.
        Cookie => Cookie, "cookie";
        /// Application cookie.
        AppCookie => AppCookie, "app_cookie";
    }
}

proto_enum! {
    /// HTTP method of rules and health checks.
    Method: HttpMethod {
        /// GET
        Get => Get, "get";
        /// POST
        Post => Post, "post";
        /// PUT
        Put => Put, "put";
        /// DELETE
        Delete => Delete, "delete";
        /// PATCH
        Patch => Patch, "patch";
        /// HEAD
        Head => Head, "head";
        /// OPTIONS
        Options => Options, "options";
    }
}

proto_enum! {
    /// Record type a DNS health check asks for.
    DnsType: DnsRecordType {
        /// IPv4 address.
        A => A, "a";
        /// IPv6 address.
        Aaaa => Aaaa, "aaaa";
    }
}

proto_enum! {
    /// How a credential is sent.
    CredentialKind: CredentialKind {
        /// `authorization: Bearer <secret>`.
        BearerToken => BearerToken, "bearer_token";
        /// `x-api-key: <secret>`.
        ApiKey => ApiKey, "api_key";
    }
}

/// Kind of active health check (the `check_type` oneof of `HealthCheck`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// TCP connect.
    Tcp,
    /// HTTP request.
    Http,
    /// HTTPS request.
    Https,
    /// DNS query.
    Dns,
    /// gRPC health protocol.
    Grpc,
}

impl CheckKind {
    /// The document spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Tcp => "tcp",
            CheckKind::Http => "http",
            CheckKind::Https => "https",
            CheckKind::Dns => "dns",
            CheckKind::Grpc => "grpc",
        }
    }
}

/// The display name of a protobuf enum value carried by the field `key` of a message, or
/// `None` when `key` is not an enum field or the value is unknown. `backend` tells the
/// two `status` fields apart (backend status vs load-balancer status).
pub fn display_name(key: &str, backend: bool, value: i32) -> Option<String> {
    let (full, prefix) = match key {
        "status" | "status_filter" if backend => (
            pv::BackendStatus::try_from(value).ok()?.as_str_name(),
            "BACKEND_STATUS_",
        ),
        "status" | "status_filter" => (
            pv::LbStatus::try_from(value).ok()?.as_str_name(),
            "LB_STATUS_",
        ),
        "protocol" | "protocol_filter" => (
            pv::ListenerProtocol::try_from(value).ok()?.as_str_name(),
            "LISTENER_PROTOCOL_",
        ),
        "min_version" => (
            pv::TlsVersion::try_from(value).ok()?.as_str_name(),
            "TLS_VERSION_",
        ),
        "client_auth" => (
            pv::ClientAuthMode::try_from(value).ok()?.as_str_name(),
            "CLIENT_AUTH_MODE_",
        ),
        "algorithm" => (
            pv::Algorithm::try_from(value).ok()?.as_str_name(),
            "ALGORITHM_",
        ),
        "mode" => (
            pv::PersistenceMode::try_from(value).ok()?.as_str_name(),
            "PERSISTENCE_MODE_",
        ),
        "method" | "methods" => (
            pv::HttpMethod::try_from(value).ok()?.as_str_name(),
            "HTTP_METHOD_",
        ),
        "record_type" => (
            pv::DnsRecordType::try_from(value).ok()?.as_str_name(),
            "DNS_RECORD_TYPE_",
        ),
        "circuit_state" => (
            pv::CircuitState::try_from(value).ok()?.as_str_name(),
            "CIRCUIT_STATE_",
        ),
        "kind" => (
            pv::CredentialKind::try_from(value).ok()?.as_str_name(),
            "CREDENTIAL_KIND_",
        ),
        _ => return None,
    };
    Some(
        full.strip_prefix(prefix)
            .unwrap_or(full)
            .to_ascii_lowercase(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn proto_round_trip_and_names() {
        for a in Algorithm::value_variants() {
            assert_eq!(Algorithm::from_proto(a.to_proto()), Some(*a));
        }
        assert_eq!(Algorithm::from_proto(0), None);
        assert_eq!(Protocol::TcpTls.as_str(), "tcp_tls");
        assert_eq!(
            display_name("algorithm", false, pv::Algorithm::LeastConnections as i32).as_deref(),
            Some("least_connections")
        );
        assert_eq!(
            display_name("status", true, pv::BackendStatus::Draining as i32).as_deref(),
            Some("draining")
        );
        assert_eq!(
            display_name("status", false, pv::LbStatus::Active as i32).as_deref(),
            Some("active")
        );
        assert_eq!(display_name("port", false, 80), None);
    }

    #[test]
    fn flags_accept_kebab_and_snake() {
        assert_eq!(
            Algorithm::from_str("least-connections", false),
            Ok(Algorithm::LeastConnections)
        );
        assert_eq!(
            Algorithm::from_str("least_connections", false),
            Ok(Algorithm::LeastConnections)
        );
        assert_eq!(Method::from_str("GET", true), Ok(Method::Get));
    }
}

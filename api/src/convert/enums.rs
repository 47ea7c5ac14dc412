//! Enum mappings. `UNSPECIFIED` maps to the documented default where the API has one, and
//! is otherwise an INVALID_ARGUMENT naming the field; unknown numbers are always rejected.

use fiberlb_proto::v1 as pb;

use crate::error::{ApiError, ApiResult};
use crate::model::*;

fn unknown(field: &str, v: i32) -> ApiError {
    ApiError::invalid(field, format!("unknown value {v}"))
}

/// Listener protocol; required.
pub fn protocol_from(v: i32) -> ApiResult<ListenerProtocol> {
    use pb::ListenerProtocol as P;
    match P::try_from(v).map_err(|_| unknown("protocol", v))? {
        P::Unspecified => Err(ApiError::invalid(
            "protocol",
            "required (tcp, udp, http, https or tcp_tls)",
        )),
        P::Tcp => Ok(ListenerProtocol::Tcp),
        P::Udp => Ok(ListenerProtocol::Udp),
        P::Http => Ok(ListenerProtocol::Http),
        P::Https => Ok(ListenerProtocol::Https),
        P::TcpTls => Ok(ListenerProtocol::TcpTls),
    }
}

/// Listener protocol to proto.
pub fn protocol_to(p: ListenerProtocol) -> i32 {
    use pb::ListenerProtocol as P;
    (match p {
        ListenerProtocol::Tcp => P::Tcp,
        ListenerProtocol::Udp => P::Udp,
        ListenerProtocol::Http => P::Http,
        ListenerProtocol::Https => P::Https,
        ListenerProtocol::TcpTls => P::TcpTls,
    }) as i32
}

/// Algorithm; unspecified = round robin.
pub fn algorithm_from(v: i32) -> ApiResult<Algorithm> {
    use pb::Algorithm as A;
    Ok(match A::try_from(v).map_err(|_| unknown("algorithm", v))? {
        A::Unspecified | A::RoundRobin => Algorithm::RoundRobin,
        A::LeastConnections => Algorithm::LeastConnections,
        A::IpHash => Algorithm::IpHash,
        A::Random => Algorithm::Random,
        A::WeightedRoundRobin => Algorithm::WeightedRoundRobin,
        A::LeastResponseTime => Algorithm::LeastResponseTime,
        A::WeightedLeastConnections => Algorithm::WeightedLeastConnections,
        A::Maglev => Algorithm::Maglev,
    })
}

/// Algorithm to proto.
pub fn algorithm_to(a: Algorithm) -> i32 {
    use pb::Algorithm as A;
    (match a {
        Algorithm::RoundRobin => A::RoundRobin,
        Algorithm::LeastConnections => A::LeastConnections,
        Algorithm::IpHash => A::IpHash,
        Algorithm::Random => A::Random,
        Algorithm::WeightedRoundRobin => A::WeightedRoundRobin,
        Algorithm::LeastResponseTime => A::LeastResponseTime,
        Algorithm::WeightedLeastConnections => A::WeightedLeastConnections,
        Algorithm::Maglev => A::Maglev,
    }) as i32
}

/// LB status from a filter value; unspecified is not a status.
pub fn lb_status_from(v: i32) -> ApiResult<LbStatus> {
    use pb::LbStatus as S;
    match S::try_from(v).map_err(|_| unknown("status_filter", v))? {
        S::Unspecified => Err(ApiError::invalid(
            "status_filter",
            "unspecified is not a status",
        )),
        S::Creating => Ok(LbStatus::Creating),
        S::Active => Ok(LbStatus::Active),
        S::Updating => Ok(LbStatus::Updating),
        S::Error => Ok(LbStatus::Error),
        S::Deleting => Ok(LbStatus::Deleting),
        S::Disabled => Ok(LbStatus::Disabled),
    }
}

/// LB status to proto.
pub fn lb_status_to(s: LbStatus) -> i32 {
    use pb::LbStatus as S;
    (match s {
        LbStatus::Creating => S::Creating,
        LbStatus::Active => S::Active,
        LbStatus::Updating => S::Updating,
        LbStatus::Error => S::Error,
        LbStatus::Deleting => S::Deleting,
        LbStatus::Disabled => S::Disabled,
    }) as i32
}

/// TLS version; unspecified = server default.
pub fn tls_version_from(v: i32) -> ApiResult<Option<TlsVersion>> {
    use pb::TlsVersion as T;
    Ok(
        match T::try_from(v).map_err(|_| unknown("tls_config.min_version", v))? {
            T::Unspecified => None,
            T::Tls12 => Some(TlsVersion::Tls12),
            T::Tls13 => Some(TlsVersion::Tls13),
        },
    )
}

/// TLS version to proto.
pub fn tls_version_to(v: Option<TlsVersion>) -> i32 {
    use pb::TlsVersion as T;
    (match v {
        None => T::Unspecified,
        Some(TlsVersion::Tls12) => T::Tls12,
        Some(TlsVersion::Tls13) => T::Tls13,
    }) as i32
}

/// Client auth mode; unspecified = none.
pub fn client_auth_from(v: i32) -> ApiResult<ClientAuthMode> {
    use pb::ClientAuthMode as C;
    Ok(
        match C::try_from(v).map_err(|_| unknown("tls_config.client_auth", v))? {
            C::Unspecified | C::None => ClientAuthMode::None,
            C::Optional => ClientAuthMode::Optional,
            C::Required => ClientAuthMode::Required,
        },
    )
}

/// Client auth mode to proto.
pub fn client_auth_to(c: ClientAuthMode) -> i32 {
    use pb::ClientAuthMode as C;
    (match c {
        ClientAuthMode::None => C::None,
        ClientAuthMode::Optional => C::Optional,
        ClientAuthMode::Required => C::Required,
    }) as i32
}

/// HTTP method; required where used.
pub fn method_from(field: &str, v: i32) -> ApiResult<HttpMethod> {
    use pb::HttpMethod as M;
    match M::try_from(v).map_err(|_| unknown(field, v))? {
        M::Unspecified => Err(ApiError::invalid(field, "method required")),
        M::Get => Ok(HttpMethod::Get),
        M::Post => Ok(HttpMethod::Post),
        M::Put => Ok(HttpMethod::Put),
        M::Delete => Ok(HttpMethod::Delete),
        M::Patch => Ok(HttpMethod::Patch),
        M::Head => Ok(HttpMethod::Head),
        M::Options => Ok(HttpMethod::Options),
    }
}

/// HTTP method to proto.
pub fn method_to(m: HttpMethod) -> i32 {
    use pb::HttpMethod as M;
    (match m {
        HttpMethod::Get => M::Get,
        HttpMethod::Post => M::Post,
        HttpMethod::Put => M::Put,
        HttpMethod::Delete => M::Delete,
        HttpMethod::Patch => M::Patch,
        HttpMethod::Head => M::Head,
        HttpMethod::Options => M::Options,
    }) as i32
}

/// Persistence mode; unspecified = none.
pub fn persistence_mode_from(v: i32) -> ApiResult<PersistenceMode> {
    use pb::PersistenceMode as P;
    Ok(
        match P::try_from(v).map_err(|_| unknown("session_persistence.mode", v))? {
            P::Unspecified | P::None => PersistenceMode::None,
            P::SourceIp => PersistenceMode::SourceIp,
            P::Cookie => PersistenceMode::Cookie,
            P::AppCookie => PersistenceMode::AppCookie,
        },
    )
}

/// Persistence mode to proto.
pub fn persistence_mode_to(m: PersistenceMode) -> i32 {
    use pb::PersistenceMode as P;
    (match m {
        PersistenceMode::None => P::None,
        PersistenceMode::SourceIp => P::SourceIp,
        PersistenceMode::Cookie => P::Cookie,
        PersistenceMode::AppCookie => P::AppCookie,
    }) as i32
}

/// Backend status to proto.
pub fn backend_status_to(s: BackendStatus) -> i32 {
    use pb::BackendStatus as B;
    (match s {
        BackendStatus::Creating => B::Creating,
        BackendStatus::Active => B::Active,
        BackendStatus::Draining => B::Draining,
        BackendStatus::Removed => B::Removed,
    }) as i32
}

/// Circuit state to proto.
pub fn circuit_state_to(s: CircuitState) -> i32 {
    use pb::CircuitState as C;
    (match s {
        CircuitState::Closed => C::Closed,
        CircuitState::Open => C::Open,
        CircuitState::HalfOpen => C::HalfOpen,
    }) as i32
}

/// DNS record type; unspecified = A.
pub fn dns_type_from(v: i32) -> ApiResult<DnsRecordType> {
    use pb::DnsRecordType as D;
    Ok(
        match D::try_from(v).map_err(|_| unknown("health_check.dns.record_type", v))? {
            D::Unspecified | D::A => DnsRecordType::A,
            D::Aaaa => DnsRecordType::Aaaa,
        },
    )
}

/// DNS record type to proto.
pub fn dns_type_to(t: DnsRecordType) -> i32 {
    use pb::DnsRecordType as D;
    (match t {
        DnsRecordType::A => D::A,
        DnsRecordType::Aaaa => D::Aaaa,
    }) as i32
}

/// Credential kind; unspecified = bearer token.
pub fn credential_kind_from(v: i32) -> ApiResult<CredentialKind> {
    use pb::CredentialKind as K;
    Ok(match K::try_from(v).map_err(|_| unknown("kind", v))? {
        K::Unspecified | K::BearerToken => CredentialKind::BearerToken,
        K::ApiKey => CredentialKind::ApiKey,
    })
}

/// Credential kind to proto.
pub fn credential_kind_to(k: CredentialKind) -> i32 {
    use pb::CredentialKind as K;
    (match k {
        CredentialKind::BearerToken => K::BearerToken,
        CredentialKind::ApiKey => K::ApiKey,
    }) as i32
}

/// PROXY protocol version; unspecified = none.
pub fn proxy_protocol_from(v: i32) -> ApiResult<Option<ProxyProtocolVersion>> {
    use pb::ProxyProtocol as P;
    Ok(
        match P::try_from(v).map_err(|_| unknown("proxy_protocol", v))? {
            P::Unspecified | P::None => None,
            P::V1 => Some(ProxyProtocolVersion::V1),
            P::V2 => Some(ProxyProtocolVersion::V2),
        },
    )
}

/// PROXY protocol version to proto.
pub fn proxy_protocol_to(v: Option<ProxyProtocolVersion>) -> i32 {
    use pb::ProxyProtocol as P;
    (match v {
        None => P::None,
        Some(ProxyProtocolVersion::V1) => P::V1,
        Some(ProxyProtocolVersion::V2) => P::V2,
    }) as i32
}

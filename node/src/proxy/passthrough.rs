//! TLS passthrough (`TcpTls` listeners): read the ClientHello without terminating TLS,
//! route by its SNI through the listener's host rules, then replay the bytes read to the
//! backend and splice. A first flight that is not a TLS ClientHello is closed.

use std::net::SocketAddr;

use fiberlb_api::model::{Condition, Listener, LoadBalancer, RuleAction};
use tokio::net::TcpStream;

use super::client_hello::peek_client_hello;
use super::connect::connect;
use super::context::ProxyContext;
use super::host_match;
use super::tcp::{relay, RelayConf};

/// The pool for a hello with this SNI: the first enabled rule whose host conditions all
/// match, else the listener's (then the load balancer's) default pool.
pub fn route<'a>(l: &'a Listener, lb: &'a LoadBalancer, sni: Option<&str>) -> Option<&'a str> {
    for rule in l.rules.iter().filter(|r| r.enabled) {
        let all = rule.conditions.iter().all(|c| match c {
            Condition::HostHeader { values } => {
                sni.is_some_and(|s| values.iter().any(|p| host_match::matches(p, s)))
            }
            // Validation admits only host conditions on tcp_tls listeners.
            _ => false,
        });
        if all {
            if let RuleAction::ForwardToPool { pool_id } = &rule.action {
                return Some(pool_id);
            }
        }
    }
    l.default_pool_id
        .as_deref()
        .or(lb.default_pool_id.as_deref())
}

/// Handles one accepted connection of a `TcpTls` listener.
pub async fn handle(
    ctx: &ProxyContext,
    listener_id: &str,
    mut client: TcpStream,
    peer: SocketAddr,
) {
    let (hello, preface) = match peek_client_hello(&mut client, ctx.live().hello_timeout).await {
        Ok(h) => h,
        Err(e) => {
            metrics::counter!("fiberlb_tls_passthrough_rejected_total").increment(1);
            tracing::debug!(client = %peer, error = %e, "not a TLS ClientHello; closing");
            return;
        }
    };
    let snapshot = ctx.cell.load();
    let Some((l, lb)) = snapshot.active_listener(listener_id) else {
        return;
    };
    let pool = route(l, lb, hello.sni.as_deref());
    let backend = match connect(&snapshot, pool, peer, &ctx.resolver, ctx.sockets_now()).await {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(listener = %l.name, sni = ?hello.sni, "no backend for TLS connection");
            super::connect::reject(&l.id, peer, e.reason(), &e);
            return;
        }
    };
    let conf = RelayConf::new(l, lb, &backend);
    drop(snapshot);
    relay(ctx, conf, client, peer, backend, &preface).await;
}

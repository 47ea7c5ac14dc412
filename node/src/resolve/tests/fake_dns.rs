//! A minimal authoritative DNS server on 127.0.0.1:0 (UDP) whose answers tests change at
//! run time: A records with a chosen TTL, SERVFAIL, or silence.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, ResponseCode};
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;

/// How the server answers A queries (AAAA queries get an empty NOERROR answer while in
/// `Answer` mode, the same failure otherwise).
#[derive(Debug, Clone)]
pub(super) enum Mode {
    Answer { ips: Vec<Ipv4Addr>, ttl: u32 },
    ServFail,
    Silent,
}

pub(super) struct FakeDns {
    pub(super) addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    a_queries: Arc<Mutex<u32>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeDns {
    pub(super) async fn start(mode: Mode) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let mode = Arc::new(Mutex::new(mode));
        let a_queries = Arc::new(Mutex::new(0));
        let task = tokio::spawn(serve(socket, mode.clone(), a_queries.clone()));
        Self {
            addr,
            mode,
            a_queries,
            task,
        }
    }

    pub(super) fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// A queries received so far (any mode).
    pub(super) fn a_queries(&self) -> u32 {
        *self.a_queries.lock().unwrap()
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(socket: UdpSocket, mode: Arc<Mutex<Mode>>, a_queries: Arc<Mutex<u32>>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
            return;
        };
        let Ok(request) = Message::from_vec(&buf[..len]) else {
            continue;
        };
        let Some(query) = request.queries.first().cloned() else {
            continue;
        };
        if query.query_type == RecordType::A {
            *a_queries.lock().unwrap() += 1;
        }
        let mode = mode.lock().unwrap().clone();
        let mut response = match mode {
            Mode::Silent => continue,
            Mode::ServFail => Message::error_msg(
                request.metadata.id,
                request.metadata.op_code,
                ResponseCode::ServFail,
            ),
            Mode::Answer { ips, ttl } => {
                let mut response = Message::response(request.metadata.id, request.metadata.op_code);
                if query.query_type == RecordType::A {
                    for ip in ips {
                        response.add_answer(Record::from_rdata(
                            query.name.clone(),
                            ttl,
                            RData::A(A(ip)),
                        ));
                    }
                }
                response
            }
        };
        response.metadata.authoritative = true;
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        response.add_queries(request.queries.clone());
        if let Ok(bytes) = response.to_vec() {
            let _ = socket.send_to(&bytes, peer).await;
        }
    }
}

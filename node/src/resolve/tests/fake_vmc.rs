//! A fake PlasmaVMC API on 127.0.0.1:0 serving `GET /v1/vms/{id}` from a table tests
//! change at run time.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What the fake answers for one VM id (ids not in the table get 404).
#[derive(Debug, Clone)]
pub(super) enum Reply {
    /// 200 with this body.
    Json(String),
    /// This status with an empty body.
    Status(u16),
    /// Accept the request and never answer.
    Hang,
}

/// A 200 reply for a VM in `state` with one private IPv4 interface.
pub(super) fn vm(id: &str, state: &str, ipv4: &str) -> Reply {
    Reply::Json(format!(
        r#"{{"id": "{id}", "state": "{state}", "interfaces": [{{"name": "eth0", "ipv4": "{ipv4}", "ipv6": null, "private": true}}]}}"#
    ))
}

type Table = Arc<Mutex<HashMap<String, Reply>>>;

pub(super) struct FakeVmc {
    pub(super) addr: SocketAddr,
    table: Table,
    requests: Arc<Mutex<u32>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeVmc {
    pub(super) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let table = Table::default();
        let requests = Arc::new(Mutex::new(0));
        let task = tokio::spawn(serve(listener, table.clone(), requests.clone()));
        Self {
            addr,
            table,
            requests,
            task,
        }
    }

    pub(super) fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(super) fn set(&self, id: &str, reply: Reply) {
        self.table.lock().unwrap().insert(id.to_string(), reply);
    }

    /// Requests received so far.
    pub(super) fn requests(&self) -> u32 {
        *self.requests.lock().unwrap()
    }
}

impl Drop for FakeVmc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, table: Table, requests: Arc<Mutex<u32>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let table = table.clone();
        let requests = requests.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let table = table.clone();
            let requests = requests.clone();
            async move { Ok::<_, Infallible>(answer(&request, &table, &requests).await) }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    request: &Request<Incoming>,
    table: &Table,
    requests: &Mutex<u32>,
) -> Response<Full<Bytes>> {
    *requests.lock().unwrap() += 1;
    let reply = request
        .uri()
        .path()
        .strip_prefix("/v1/vms/")
        .and_then(|id| table.lock().unwrap().get(id).cloned())
        .unwrap_or(Reply::Status(404));
    let (status, body) = match reply {
        Reply::Json(body) => (StatusCode::OK, body),
        Reply::Status(code) => (StatusCode::from_u16(code).unwrap(), String::new()),
        Reply::Hang => std::future::pending().await,
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

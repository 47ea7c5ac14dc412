//! L7 data plane end to end: a real `fiberlb serve`, real HTTP/1, h2c, h2, WebSocket and
//! gRPC clients and backends, raw sockets for the hostile cases.

mod access_log;
mod bulk;
mod common;
mod forwarded;
mod h1;
mod h2;
mod hostile;
mod keepalive;
mod protocols;
mod routing;
mod tls;

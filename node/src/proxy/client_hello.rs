//! TLS ClientHello parsing (in progress).

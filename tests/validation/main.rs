//! Every request the API must refuse, with the gRPC code and the error code that starts the
//! message; pagination; optimistic concurrency (stale revisions). Each test starts its own node.

mod backend;
mod deletes;
mod listener;
mod names;
mod not_found;
mod pagination;
mod revisions;
mod rules;

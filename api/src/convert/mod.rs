//! Conversions between protobuf messages (`fiberlb_proto::v1`) and domain types, validating
//! on the way in. Nothing past this module sees protobuf types.

mod enums;
mod listener;
mod objects;
mod pool;

pub use enums::*;
pub use listener::{rule_from_proto, tls_from_proto};
pub use objects::{backend_address_from_proto, health_to_proto};
pub use pool::{circuit_breaker_from_proto, health_check_from_proto, persistence_from_proto};

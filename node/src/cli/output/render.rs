//! Turns a generated protobuf message into a JSON value fit for people: enum numbers
//! become their names and oneof variants (`HostHeader`) become snake_case keys.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::cli::enums::display_name;
use crate::cli::error::CliError;

/// Fields whose value is a serialized oneof (`{"Variant": ...}`); only these keys' single
/// child is renamed, so user map keys (tags, headers) are never touched.
const ONEOF_FIELDS: &[&str] = &["condition", "action", "check_type", "address"];

/// The value of `msg` with enum fields named and oneof variants in snake_case.
pub fn render<T: Serialize>(msg: &T) -> Result<Value, CliError> {
    let mut v = serde_json::to_value(msg)?;
    walk(&mut v);
    Ok(v)
}

fn walk(v: &mut Value) {
    match v {
        Value::Object(map) => {
            // A backend carries `pool_id` and `weight`; its `status` is a BackendStatus.
            let backend = map.contains_key("pool_id") && map.contains_key("weight");
            for (key, child) in map.iter_mut() {
                if ONEOF_FIELDS.contains(&key.as_str()) {
                    rename_variant(child);
                }
                name_enum(key, backend, child);
                walk(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(walk),
        Value::Number(n) => {
            if let Some(short) = n.as_f64().filter(|_| n.is_f64()).and_then(shortest_f32) {
                *v = short;
            }
        }
        _ => {}
    }
}

/// Protobuf floats are f32; widened to f64 they print as `0.30000001192092896`. Prints
/// them as the shortest decimal that reads back as the same f32 (`0.3`).
fn shortest_f32(x: f64) -> Option<Value> {
    let f = x as f32;
    if f64::from(f) != x {
        return None;
    }
    let short: f64 = f.to_string().parse().ok()?;
    serde_json::Number::from_f64(short).map(Value::Number)
}

fn name_enum(key: &str, backend: bool, v: &mut Value) {
    let named = |n: &Value| {
        n.as_i64()
            .and_then(|i| i32::try_from(i).ok())
            .and_then(|i| display_name(key, backend, i))
            .map(Value::String)
    };
    match v {
        Value::Number(_) => {
            if let Some(s) = named(v) {
                *v = s;
            }
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                if let Some(s) = named(item) {
                    *item = s;
                }
            }
        }
        _ => {}
    }
}

fn rename_variant(v: &mut Value) {
    if let Value::Object(map) = v {
        if map.len() == 1 {
            let renamed: Map<String, Value> = std::mem::take(map)
                .into_iter()
                .map(|(k, val)| (snake_case(&k), val))
                .collect();
            *map = renamed;
        }
    }
}

/// `HostHeader` → `host_header`.
fn snake_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use fiberlb_proto::v1 as pv;

    #[test]
    fn enums_and_oneofs_are_named() {
        let l = pv::Listener {
            protocol: pv::ListenerProtocol::TcpTls as i32,
            rules: vec![pv::RoutingRule {
                conditions: vec![pv::RuleCondition {
                    condition: Some(pv::rule_condition::Condition::Method(pv::MethodCondition {
                        methods: vec![pv::HttpMethod::Get as i32, pv::HttpMethod::Post as i32],
                    })),
                }],
                action: Some(pv::RuleAction {
                    action: Some(pv::rule_action::Action::ForwardToPool(
                        pv::ForwardToPoolAction {
                            pool_id: "p".into(),
                        },
                    )),
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let v = render(&l).unwrap();
        assert_eq!(v["protocol"], "tcp_tls");
        assert_eq!(
            v["rules"][0]["conditions"][0]["condition"]["method"]["methods"],
            serde_json::json!(["get", "post"])
        );
        assert_eq!(
            v["rules"][0]["action"]["action"]["forward_to_pool"]["pool_id"],
            "p"
        );
        assert_eq!(v["port"], 0);

        let b = pv::Backend {
            status: pv::BackendStatus::Draining as i32,
            address: Some(pv::BackendAddress {
                address: Some(pv::backend_address::Address::VmId("vm".into())),
            }),
            metadata: [("Team".to_string(), "x".to_string())].into(),
            ..Default::default()
        };
        let v = render(&b).unwrap();
        assert_eq!(v["status"], "draining");
        assert_eq!(v["address"]["address"]["vm_id"], "vm");
        assert_eq!(v["metadata"]["Team"], "x");

        let c = pv::CircuitBreakerConfig {
            failure_rate_threshold: 0.3,
            ..Default::default()
        };
        assert_eq!(
            render(&c).unwrap()["failure_rate_threshold"],
            serde_json::json!(0.3)
        );
    }
}

//! The `table` format: aligned columns for lists and a `key: value` block for one object,
//! both read from the rendered JSON value of a message.

use serde_json::Value;

/// Fields holding Unix-millisecond timestamps, shown as UTC date-times.
const TIME_FIELDS: &[&str] = &[
    "created_at",
    "updated_at",
    "last_check",
    "last_healthy",
    "last_transition",
    "not_before",
    "not_after",
    "drain_deadline",
    "started_at",
    "expires_at",
];

/// How a list column gets its cell from a row.
#[derive(Debug, Clone, Copy)]
pub enum Column {
    /// The value at a JSON pointer (`/health_status/healthy`).
    Field(&'static str, &'static str),
    /// The length of the array at a JSON pointer.
    Count(&'static str, &'static str),
    /// A computed cell.
    Computed(&'static str, fn(&Value) -> String),
}

impl Column {
    fn header(&self) -> &'static str {
        match self {
            Column::Field(h, _) | Column::Count(h, _) | Column::Computed(h, _) => h,
        }
    }

    fn cell(&self, row: &Value) -> String {
        match self {
            Column::Field(_, ptr) => {
                let key = ptr.rsplit('/').next().unwrap_or("");
                row.pointer(ptr)
                    .map(|v| cell(key, v))
                    .unwrap_or_else(|| "-".into())
            }
            Column::Count(_, ptr) => row
                .pointer(ptr)
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
                .to_string(),
            Column::Computed(_, f) => f(row),
        }
    }
}

/// Rows under a header, columns separated by two spaces.
pub fn columns(rows: &[Value], cols: &[Column]) -> String {
    let mut grid: Vec<Vec<String>> = vec![cols.iter().map(|c| c.header().to_string()).collect()];
    grid.extend(
        rows.iter()
            .map(|r| cols.iter().map(|c| c.cell(r)).collect()),
    );
    let widths: Vec<usize> = (0..cols.len())
        .map(|i| {
            grid.iter()
                .map(|row| row[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in grid {
        let last = row.len().saturating_sub(1);
        for (i, c) in row.iter().enumerate() {
            if i == last {
                out.push_str(c);
            } else {
                out.push_str(c);
                out.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        out.push('\n');
    }
    out
}

/// One object as `key: value` lines; nested messages and lists of messages follow as
/// indented YAML under their key.
pub fn key_values(v: &Value) -> String {
    let Some(map) = v.as_object() else {
        return format!("{}\n", cell("", v));
    };
    // Identity first, then the rest alphabetically.
    let rank = |k: &str| match k {
        "id" => 0,
        "name" => 1,
        _ => 2,
    };
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_by_key(|k| rank(k));
    let width = keys.iter().map(|k| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for key in keys {
        let val = simplify(key, &map[key]);
        if let Some(text) = val.as_str().filter(|t| t.contains('\n')) {
            out.push_str(&format!("{key}: |\n"));
            text.lines()
                .for_each(|line| out.push_str(&format!("  {line}\n")));
        } else if is_flat(&val) {
            out.push_str(&format!(
                "{:width$}  {}\n",
                format!("{key}:"),
                cell(key, &val),
                width = width + 1
            ));
        } else {
            out.push_str(&format!("{key}:\n"));
            let yaml = serde_yaml::to_string(&val).unwrap_or_default();
            for line in yaml.lines() {
                out.push_str("  ");
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Collapses a backend address (`{"address": {"ip": "10.0.0.1"}}`) to its text.
fn simplify(key: &str, v: &Value) -> Value {
    if key == "address" {
        if let Some((variant, val)) = v
            .get("address")
            .and_then(Value::as_object)
            .and_then(|m| m.iter().next())
        {
            let text = val.as_str().unwrap_or_default();
            return Value::String(if variant == "vm_id" {
                format!("vm:{text}")
            } else {
                text.to_string()
            });
        }
    }
    v.clone()
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

fn is_flat(v: &Value) -> bool {
    match v {
        Value::Array(items) => items.iter().all(is_scalar),
        // String maps (tags, metadata) fit on a line; messages are shown nested.
        Value::Object(map) => map.values().all(Value::is_string),
        _ => true,
    }
}

/// A value as one cell: `-` for nothing, lists joined by commas, maps as `k=v`.
fn cell(key: &str, v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) if TIME_FIELDS.contains(&key) => match n.as_u64() {
            Some(0) | None => "-".into(),
            Some(ms) => format_time_ms(ms),
        },
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items
            .iter()
            .map(|i| cell("", i))
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(map) if map.is_empty() => "-".into(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", cell("", v)))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn format_time_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn time_formatting() {
        assert_eq!(format_time_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time_ms(1_709_251_199_000), "2024-02-29T23:59:59Z");
        assert_eq!(format_time_ms(951_782_400_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn columns_are_aligned() {
        let rows = vec![
            json!({"id": "a", "name": "web", "listeners": ["x", "y"]}),
            json!({"id": "bbb", "name": ""}),
        ];
        let cols = [
            Column::Field("ID", "/id"),
            Column::Field("NAME", "/name"),
            Column::Count("LISTENERS", "/listeners"),
        ];
        assert_eq!(
            columns(&rows, &cols),
            "ID   NAME  LISTENERS\na    web   2\nbbb  -     0\n"
        );
    }

    #[test]
    fn key_value_block() {
        let v = json!({
            "id": "x",
            "tags": {"team": "web"},
            "created_at": 951_782_400_000u64,
            "address": {"address": {"ip": "10.0.0.1"}},
            "rules": [{"name": "api"}],
            "pem": "a\nb\n",
        });
        let text = key_values(&v);
        assert!(text.starts_with("id:          x\n"), "{text}");
        assert!(text.contains("address:     10.0.0.1\n"), "{text}");
        assert!(
            text.contains("created_at:  2000-02-29T00:00:00Z\n"),
            "{text}"
        );
        assert!(text.contains("tags:        team=web\n"), "{text}");
        assert!(text.contains("rules:\n  - name: api\n"), "{text}");
        assert!(text.contains("pem: |\n  a\n  b\n"), "{text}");
    }
}

//! Printing API responses: `table` (aligned columns for lists, a `key: value` block for one
//! object), `json` and `yaml`. All three render protobuf enums by name (`http`,
//! `round_robin`), never as numbers, and oneof variants in snake_case.

mod render;
mod table;

use serde::Serialize;
use serde_json::Value;

pub use render::render;
pub use table::{format_time_ms, Column};

use super::error::CliError;

/// Output format (`-o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns, or `key: value` for one object.
    Table,
    /// Pretty JSON.
    Json,
    /// YAML.
    Yaml,
}

/// Prints one message.
pub fn print_object<T: Serialize>(format: Format, value: &T) -> Result<(), CliError> {
    let v = render(value)?;
    match format {
        Format::Table => print!("{}", table::key_values(&v)),
        _ => print_structured(format, &v)?,
    }
    Ok(())
}

/// Prints a list response: in `table` format the array under `items` as columns (with a
/// hint on stderr when there are more pages), else the whole response.
pub fn print_list<T: Serialize>(
    format: Format,
    response: &T,
    items: &str,
    columns: &[Column],
) -> Result<(), CliError> {
    let v = render(response)?;
    match format {
        Format::Table => {
            let rows = v
                .get(items)
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            print!("{}", table::columns(rows, columns));
            if let Some(token) = v
                .get("next_page_token")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                eprintln!("(more results: --page-token {token}, or --all)");
            }
        }
        _ => print_structured(format, &v)?,
    }
    Ok(())
}

/// Prints `message` in table format, or the response in json/yaml (for deletions and
/// other calls whose answer is just an id).
pub fn print_done<T: Serialize>(format: Format, message: &str, value: &T) -> Result<(), CliError> {
    match format {
        Format::Table => {
            println!("{message}");
            Ok(())
        }
        _ => print_structured(format, &render(value)?),
    }
}

fn print_structured(format: Format, v: &Value) -> Result<(), CliError> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(v)?),
        _ => print!("{}", serde_yaml::to_string(v)?),
    }
    Ok(())
}

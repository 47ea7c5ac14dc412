//! Maps between positions in a TOML file and dotted keys (`bgp.peers[0].asn`), so errors
//! from toml (which carry a byte span) and from validation (which carry a key) can both
//! say "this key, this line".

use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// One key (or array element) of the document.
#[derive(Debug)]
struct Entry {
    /// Dotted path, array elements as `[i]`.
    path: String,
    /// Number of path segments; deeper entries are more specific.
    depth: usize,
    /// Byte span of the key (for array elements: of the element).
    key: Range<usize>,
    /// Byte span of the value (for tables: their header).
    value: Range<usize>,
}

/// Every key of one parsed TOML document with its position.
#[derive(Debug)]
pub(crate) struct KeySpans {
    entries: Vec<Entry>,
    /// Byte offset where each line starts, for offset → line.
    line_starts: Vec<usize>,
}

impl KeySpans {
    /// Parses `text`; a syntax error is returned as toml reports it.
    pub(crate) fn parse(text: &str) -> Result<KeySpans, toml::de::Error> {
        let doc = DeTable::parse(text)?;
        let mut entries = Vec::new();
        walk_table(doc.get_ref(), "", 0, &mut entries);
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Ok(KeySpans {
            entries,
            line_starts,
        })
    }

    /// 1-based line of a byte offset.
    pub(crate) fn line_of_offset(&self, offset: usize) -> usize {
        self.line_starts
            .partition_point(|&start| start <= offset)
            .max(1)
    }

    /// 1-based line of `key`, or of its nearest enclosing key that the file has.
    pub(crate) fn line_of_key(&self, key: &str) -> Option<usize> {
        ancestors(key).find_map(|k| {
            self.entries
                .iter()
                .find(|e| e.path == k)
                .map(|e| self.line_of_offset(e.key.start))
        })
    }

    /// True when `key` itself (not only an enclosing table) is in the file.
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.entries.iter().any(|e| e.path == key)
    }

    /// The most specific key whose key or value covers `offset`.
    pub(crate) fn key_at(&self, offset: usize) -> Option<&str> {
        let covers = |r: &Range<usize>| r.start <= offset && (offset < r.end || r.is_empty());
        self.entries
            .iter()
            .filter(|e| covers(&e.key) || covers(&e.value))
            .max_by_key(|e| e.depth)
            .map(|e| e.path.as_str())
    }
}

/// `a.b[2].c`, `a.b[2]`, `a.b`, `a`: the key and every key enclosing it.
pub(crate) fn ancestors(key: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(key), |k| {
        k.rfind(['.', '['])
            .map(|i| &k[..i])
            .filter(|k| !k.is_empty())
    })
}

fn walk_table(table: &DeTable<'_>, prefix: &str, depth: usize, out: &mut Vec<Entry>) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        out.push(Entry {
            path: path.clone(),
            depth: depth + 1,
            key: key.span(),
            value: value.span(),
        });
        walk_value(value.get_ref(), &path, depth + 1, out);
    }
}

fn walk_value(value: &DeValue<'_>, path: &str, depth: usize, out: &mut Vec<Entry>) {
    match value {
        DeValue::Table(table) => walk_table(table, path, depth, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                out.push(Entry {
                    path: item_path.clone(),
                    depth: depth + 1,
                    key: item.span(),
                    value: item.span(),
                });
                walk_value(item.get_ref(), &item_path, depth + 1, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str =
        "[server]\ngrpc_addr = \"x\"\n\n[[bgp.peers]]\nasn = 1\n[[bgp.peers]]\nasn = 2\n";

    #[test]
    fn keys_have_lines() {
        let spans = KeySpans::parse(DOC).unwrap();
        assert_eq!(spans.line_of_key("server.grpc_addr"), Some(2));
        assert_eq!(spans.line_of_key("bgp.peers[1].asn"), Some(7));
        // Missing key: the enclosing table's line.
        assert_eq!(spans.line_of_key("bgp.peers[1].hold_time"), Some(6));
        assert_eq!(spans.line_of_key("cluster.vip_pool"), None);
        assert!(spans.contains("bgp.peers[0].asn"));
        assert!(!spans.contains("bgp.peers[0].port"));
    }

    #[test]
    fn offsets_map_to_the_most_specific_key() {
        let spans = KeySpans::parse(DOC).unwrap();
        let value = DOC.find("\"x\"").unwrap();
        assert_eq!(spans.key_at(value), Some("server.grpc_addr"));
        let second_asn = DOC.rfind("2").unwrap();
        assert_eq!(spans.key_at(second_asn), Some("bgp.peers[1].asn"));
        assert_eq!(spans.line_of_offset(0), 1);
        assert_eq!(spans.line_of_offset(second_asn), 7);
    }

    #[test]
    fn ancestors_walk_up() {
        let all: Vec<_> = ancestors("bgp.peers[0].asn").collect();
        assert_eq!(
            all,
            ["bgp.peers[0].asn", "bgp.peers[0]", "bgp.peers", "bgp"]
        );
    }
}

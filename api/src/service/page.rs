//! Pagination: results are sorted by a key (name, then id); the page token is that key of
//! the last item returned, opaque to clients (URL-safe base64).

use base64::Engine;

use crate::error::{ApiError, ApiResult};

/// Default page size.
pub const DEFAULT_LIMIT: u32 = 100;
/// Largest page size.
pub const MAX_LIMIT: u32 = 1000;

/// One page of sorted results.
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Token for the next page; empty on the last page.
    pub next_page_token: String,
    /// Number of items matching the filters across all pages.
    pub total_count: u32,
}

/// Sorts `items` by `key` and cuts the page after `page_token`.
pub fn paginate<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> String,
    limit: u32,
    page_token: &str,
) -> ApiResult<Page<T>> {
    let limit = match limit {
        0 => DEFAULT_LIMIT,
        l => l.min(MAX_LIMIT),
    } as usize;
    let after = if page_token.is_empty() {
        None
    } else {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(page_token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| ApiError::invalid("page_token", "not a token returned by this API"))?;
        Some(raw)
    };
    let total_count = items.len() as u32;
    items.sort_by_cached_key(&key);
    let start = match &after {
        None => 0,
        Some(a) => items.partition_point(|i| key(i).as_str() <= a.as_str()),
    };
    let mut page: Vec<T> = items.into_iter().skip(start).collect();
    let more = page.len() > limit;
    page.truncate(limit);
    let next_page_token = match (more, page.last()) {
        (true, Some(last)) => base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key(last)),
        _ => String::new(),
    };
    Ok(Page {
        items: page,
        next_page_token,
        total_count,
    })
}

/// The usual sort key: name, then id (names are unique in scope, ids break ties across scopes).
pub fn name_key(name: &str, id: &str) -> String {
    format!("{name}\u{0}{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_everything_once() {
        let items: Vec<u32> = (0..250).rev().collect();
        let key = |i: &u32| format!("{i:05}");
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let p = paginate(items.clone(), key, 100, &token).unwrap();
            assert_eq!(p.total_count, 250);
            seen.extend(p.items);
            if p.next_page_token.is_empty() {
                break;
            }
            token = p.next_page_token;
        }
        assert_eq!(seen, (0..250).collect::<Vec<_>>());
        assert!(paginate(items, key, 10, "%%%").is_err());
    }
}

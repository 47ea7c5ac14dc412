//! Flag value parsers and the paging options shared by every `list` command.

use std::collections::HashMap;
use std::future::Future;

/// Parses `key=value` (the value may be empty and may contain `=`).
pub fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Parses `name=v1,v2` (a header condition).
pub fn name_values(s: &str) -> Result<(String, Vec<String>), String> {
    let (name, values) = key_value(s)?;
    let values: Vec<String> = values
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from)
        .collect();
    if values.is_empty() {
        return Err(format!("expected NAME=VALUE[,VALUE...], got {s:?}"));
    }
    Ok((name, values))
}

/// Collects repeated `key=value` flags into a map (a later key wins).
pub fn to_map(pairs: &[(String, String)]) -> HashMap<String, String> {
    pairs.iter().cloned().collect()
}

/// Paging options of list commands.
#[derive(Debug, Clone, clap::Args)]
pub struct Paging {
    /// Page size (server default 100, at most 1000).
    #[arg(long, default_value_t = 0)]
    pub limit: u32,
    /// Continue from a previous page's next_page_token.
    #[arg(long, default_value = "")]
    pub page_token: String,
    /// Follow next_page_token until every page is fetched.
    #[arg(long)]
    pub all: bool,
}

/// One page of a list call: items, next page token, total count.
pub type Page<T> = (Vec<T>, String, u32);

/// Calls `fetch(page_token)` once, or until the last page with `--all`, and returns the
/// items of every page fetched, the next token left (empty after `--all`) and the total.
pub async fn collect<T, F, Fut>(paging: &Paging, mut fetch: F) -> Result<Page<T>, tonic::Status>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<Page<T>, tonic::Status>>,
{
    let mut items = Vec::new();
    let mut token = paging.page_token.clone();
    loop {
        let (mut page, next, total) = fetch(token.clone()).await?;
        items.append(&mut page);
        // A server repeating a token would loop forever: stop instead.
        if !paging.all || next.is_empty() || next == token {
            return Ok((items, next, total));
        }
        token = next;
    }
}

/// Every page of a list call (used by `apply` and `export`).
pub async fn collect_all<T, F, Fut>(fetch: F) -> Result<Vec<T>, tonic::Status>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<Page<T>, tonic::Status>>,
{
    let paging = Paging {
        limit: 0,
        page_token: String::new(),
        all: true,
    };
    Ok(collect(&paging, fetch).await?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        assert_eq!(key_value("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(key_value("a=").unwrap(), ("a".into(), "".into()));
        assert!(key_value("=b").is_err());
        assert!(key_value("ab").is_err());
        assert_eq!(
            name_values("x-env=prod, dev").unwrap(),
            ("x-env".into(), vec!["prod".into(), "dev".into()])
        );
        assert!(name_values("x-env=").is_err());
    }

    #[tokio::test]
    async fn collect_follows_tokens_only_with_all() {
        let fetch = |t: String| async move {
            let n: u32 = t.parse().unwrap_or(0);
            let next = if n < 2 {
                (n + 1).to_string()
            } else {
                String::new()
            };
            Ok::<_, tonic::Status>((vec![n], next, 3))
        };
        let one = Paging {
            limit: 0,
            page_token: String::new(),
            all: false,
        };
        assert_eq!(
            collect(&one, fetch).await.unwrap(),
            (vec![0], "1".to_string(), 3)
        );
        assert_eq!(collect_all(fetch).await.unwrap(), vec![0, 1, 2]);
    }
}

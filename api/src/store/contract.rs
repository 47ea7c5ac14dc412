//! The behaviour every [`ConfigStore`] implementation must show, as reusable async checks.
//! The memory store runs them in its unit tests; the embedded and etcd stores run them too
//! (enable the `test-util` feature of `fiberlb-api`).

use futures::StreamExt;

use super::{Compare, ConfigStore, Op, StoreError, Txn, WatchEvent};

/// Runs every check on a fresh, empty store.
pub async fn run_all(store: &dyn ConfigStore) {
    txn_put_get_range(store).await;
    compare_and_swap(store).await;
    watch_sees_commits(store).await;
}

async fn txn_put_get_range(store: &dyn ConfigStore) {
    let r0 = store.revision().await.expect("revision");
    let r1 = store
        .txn(
            Txn::new()
                .then(Op::put("t/a/1", b"one".to_vec()))
                .then(Op::put("t/a/2", b"two".to_vec())),
        )
        .await
        .expect("txn");
    assert_eq!(r1, r0 + 1, "one txn bumps the revision by one");
    let kv = store.get("t/a/1").await.expect("get").expect("present");
    assert_eq!(kv.value, b"one");
    assert_eq!((kv.create_revision, kv.mod_revision), (r1, r1));
    store
        .txn(Txn::new().then(Op::put("t/b", b"x".to_vec())))
        .await
        .expect("txn");
    let keys: Vec<_> = store
        .range("t/a/")
        .await
        .expect("range")
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(keys, vec!["t/a/1".to_string(), "t/a/2".to_string()]);
    let r3 = store
        .txn(Txn::new().then(Op::put("t/a/1", b"uno".to_vec())))
        .await
        .expect("txn");
    let kv = store.get("t/a/1").await.expect("get").expect("present");
    assert_eq!(
        (kv.create_revision, kv.mod_revision),
        (r1, r3),
        "update keeps create_revision"
    );
    store
        .txn(Txn::new().then(Op::delete("t/a/1")))
        .await
        .expect("txn");
    assert!(store.get("t/a/1").await.expect("get").is_none());
    assert_eq!(store.revision().await.expect("revision"), r3 + 1);
}

async fn compare_and_swap(store: &dyn ConfigStore) {
    let rev = store
        .txn(
            Txn::new()
                .when(Compare::absent("cas/k"))
                .then(Op::put("cas/k", b"v1".to_vec())),
        )
        .await
        .expect("create if absent");
    let again = store
        .txn(
            Txn::new()
                .when(Compare::absent("cas/k"))
                .then(Op::put("cas/k", b"v2".to_vec())),
        )
        .await;
    assert!(
        matches!(again, Err(StoreError::Conflict { .. })),
        "create twice conflicts: {again:?}"
    );
    let stale = store
        .txn(
            Txn::new()
                .when(Compare::revision("cas/k", rev + 100))
                .then(Op::put("cas/k", b"v3".to_vec()))
                .then(Op::put("cas/other", b"x".to_vec())),
        )
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict { .. })));
    assert_eq!(
        store
            .get("cas/k")
            .await
            .expect("get")
            .expect("present")
            .value,
        b"v1",
        "conflict writes nothing"
    );
    assert!(
        store.get("cas/other").await.expect("get").is_none(),
        "conflict writes nothing, not even other keys"
    );
    store
        .txn(
            Txn::new()
                .when(Compare::revision("cas/k", rev))
                .then(Op::put("cas/k", b"v4".to_vec())),
        )
        .await
        .expect("matching revision applies");
    assert_eq!(
        store
            .get("cas/k")
            .await
            .expect("get")
            .expect("present")
            .value,
        b"v4"
    );
}

async fn watch_sees_commits(store: &dyn ConfigStore) {
    let now = store.revision().await.expect("revision");
    let mut w = store.watch("w/", now).await.expect("watch");
    store
        .txn(Txn::new().then(Op::put("other/x", b"no".to_vec())))
        .await
        .expect("txn");
    store
        .txn(Txn::new().then(Op::put("w/1", b"a".to_vec())))
        .await
        .expect("txn");
    store
        .txn(Txn::new().then(Op::delete("w/1")))
        .await
        .expect("txn");
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), w.next())
        .await
        .expect("event in time");
    match first {
        Some(Ok(WatchEvent::Put(kv))) => {
            assert_eq!((kv.key.as_str(), kv.value.as_slice()), ("w/1", &b"a"[..]))
        }
        other => panic!("expected put of w/1, got {other:?}"),
    }
    let second = tokio::time::timeout(std::time::Duration::from_secs(5), w.next())
        .await
        .expect("event in time");
    assert!(
        matches!(second, Some(Ok(WatchEvent::Delete { ref key, .. })) if key == "w/1"),
        "{second:?}"
    );
}

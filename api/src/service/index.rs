//! Index keys of each object kind, and the transactions that write or delete an object
//! together with its index keys: new index keys must be absent (that is how name, port and
//! VIP uniqueness hold under concurrent writers), dropped ones are deleted.

use crate::keys;
use crate::model::*;
use crate::repo::{encode, Stored};
use crate::store::{Compare, Op, Txn};

/// An object with index keys pointing at its id.
pub(crate) trait Indexed: Stored {
    /// Every index key of the object in its current state.
    fn index_keys(&self) -> Vec<String>;
}

impl Indexed for LoadBalancer {
    fn index_keys(&self) -> Vec<String> {
        let s = &self.scope;
        let mut v = vec![
            keys::lb_by_name(&s.org_id, s.project_id.as_deref(), &self.name),
            keys::lb_by_org(&s.org_id, &self.id),
        ];
        if let Some(p) = &s.project_id {
            v.push(keys::lb_by_project(&s.org_id, p, &self.id));
        }
        if let Some(vip) = &self.vip {
            v.push(keys::vip(vip));
        }
        v
    }
}

impl Indexed for Listener {
    fn index_keys(&self) -> Vec<String> {
        let mut v = vec![
            keys::listener_by_lb(&self.lb_id, &self.id),
            keys::listener_by_port(&self.lb_id, self.port, self.protocol.is_udp()),
            keys::listener_by_name(&self.lb_id, &self.name),
        ];
        v.extend(
            self.referenced_certificates()
                .into_iter()
                .map(|c| keys::cert_ref(c, &self.id)),
        );
        v
    }
}

impl Indexed for Pool {
    fn index_keys(&self) -> Vec<String> {
        vec![
            keys::pool_by_lb(&self.lb_id, &self.id),
            keys::pool_by_name(&self.lb_id, &self.name),
        ]
    }
}

impl Indexed for Backend {
    fn index_keys(&self) -> Vec<String> {
        let addr = format!("{}|{}", self.address, self.port);
        let hash = &crate::auth::hash_secret(&addr)[..32];
        vec![
            keys::backend_by_pool(&self.pool_id, &self.id),
            keys::backend_by_name(&self.pool_id, &self.name),
            keys::backend_by_address(hash, &self.id),
        ]
    }
}

impl Indexed for Certificate {
    fn index_keys(&self) -> Vec<String> {
        vec![
            keys::cert_by_name(
                &self.scope.org_id,
                self.scope.project_id.as_deref(),
                &self.name,
            ),
            keys::cert_by_org(&self.scope.org_id, &self.id),
        ]
    }
}

impl Indexed for AccessToken {
    fn index_keys(&self) -> Vec<String> {
        if self.revoked {
            Vec::new()
        } else {
            vec![keys::token_by_hash(&self.secret_sha256)]
        }
    }
}

/// Adds to `txn` the write of `new`, replacing `old` (None = create).
pub(crate) fn write<T: Indexed>(txn: Txn, old: Option<&T>, new: &T) -> Txn {
    let key = T::key_of(new.id());
    let mut txn = txn.when(Compare::revision(
        key.clone(),
        old.map(|o| o.revision()).unwrap_or(0),
    ));
    txn = txn.then(Op::put(key, encode(new)));
    let old_keys = old.map(|o| o.index_keys()).unwrap_or_default();
    let new_keys = new.index_keys();
    for k in &new_keys {
        if !old_keys.contains(k) {
            txn = txn
                .when(Compare::absent(k.clone()))
                .then(Op::put(k.clone(), new.id().to_string()));
        }
    }
    for k in old_keys {
        if !new_keys.contains(&k) {
            txn = txn.then(Op::delete(k));
        }
    }
    txn
}

/// Adds to `txn` the deletion of `obj` and its index keys, if it is unchanged.
pub(crate) fn delete<T: Indexed>(txn: Txn, obj: &T) -> Txn {
    let key = T::key_of(obj.id());
    let mut txn = txn
        .when(Compare::revision(key.clone(), obj.revision()))
        .then(Op::delete(key));
    for k in obj.index_keys() {
        txn = txn.then(Op::delete(k));
    }
    txn.then(Op::delete(keys::gen(obj.id())))
}

/// Requires `parent` unchanged (so it still exists) and records a change under it, which
/// makes a concurrent delete of the parent retry and see the new child or reference.
pub(crate) fn under<T: Stored>(txn: Txn, parent: &T) -> Txn {
    txn.when(Compare::revision(T::key_of(parent.id()), parent.revision()))
        .then(Op::put(
            keys::gen(parent.id()),
            crate::model::now_ms().to_string(),
        ))
}

/// Records a change under `id` without requiring anything of it.
pub(crate) fn touch(txn: Txn, id: &str) -> Txn {
    txn.then(Op::put(keys::gen(id), crate::model::now_ms().to_string()))
}

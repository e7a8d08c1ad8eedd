//! What the wasm build keeps in Envoy's shared data, natively: one key-value store in process
//! memory for every worker and every filter of this Envoy (as one wasm VM id shares it), with the
//! same versioned compare-and-swap writes. Sharded, so workers rarely wait on one another.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};

use actorchain::revocation_feed;
use actorchain::root::JWKS_KEY;

const SHARDS: usize = 16;

/// Values and their versions, by key.
type Shard = RwLock<HashMap<String, (Vec<u8>, u32)>>;

#[derive(Default)]
pub struct Store {
    shards: [Shard; SHARDS],
    version: AtomicU32,
    /// Bumped by every write of what each worker adopts (keys, revocations), so a worker needs one
    /// atomic read per request to know whether to look.
    published: AtomicU64,
}

impl Store {
    /// The one store of this process.
    #[cfg_attr(test, allow(dead_code))] // its users link only inside Envoy
    pub fn global() -> &'static Store {
        static STORE: OnceLock<Store> = OnceLock::new();
        STORE.get_or_init(Store::default)
    }

    fn shard(&self, key: &str) -> &Shard {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        &self.shards[h.finish() as usize % SHARDS]
    }

    /// The value under `key` and its version.
    pub fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        // A poisoned shard (a panic while writing) still holds whole entries: each is one insert.
        let shard = self.shard(key).read().unwrap_or_else(|e| e.into_inner());
        match shard.get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    /// Writes unless `cas` names a version that has since been replaced; says whether it wrote.
    pub fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        let mut shard = self.shard(key).write().unwrap_or_else(|e| e.into_inner());
        if let (Some(want), Some((_, have))) = (cas, shard.get(key)) {
            if want != *have {
                return false;
            }
        }
        let version = self.version.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        shard.insert(key.to_string(), (value.to_vec(), version));
        drop(shard);
        if key.starts_with(JWKS_KEY) || key.starts_with(revocation_feed::SHARED_KEY) {
            self.published.fetch_add(1, Ordering::Release);
        }
        true
    }

    /// Changes whenever keys or revocations are published.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_and_swap_as_envoys_shared_data() {
        let s = Store::default();
        assert!(s.set("k", b"a", None));
        let (v, cas) = s.get("k");
        assert_eq!(v.as_deref(), Some(&b"a"[..]));
        assert!(s.set("k", b"b", cas));
        assert!(!s.set("k", b"c", cas), "a stale version must not overwrite");
        assert_eq!(s.get("k").0.as_deref(), Some(&b"b"[..]));
        assert!(s.set("new", b"x", Some(7)), "a version for a key not there yet writes, as Envoy does");
    }

    #[test]
    fn publishing_keys_is_noticed_other_writes_are_not() {
        let s = Store::default();
        let before = s.published();
        s.set("actorchain.slot.1", b"x", None);
        assert_eq!(s.published(), before);
        s.set(&format!("{JWKS_KEY}/sts/sts.example"), b"1\n{}", None);
        assert_ne!(s.published(), before);
    }
}

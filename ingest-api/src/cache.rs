//! A small time-bounded cache for values read on every request (API keys, tenant policies),
//! so the hot path costs no database read. Entries live `ttl`; a change made through this
//! instance evicts at once, other instances see it within `ttl`.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Most entries kept; beyond it the cache starts over (unknown ids are cached too, against
/// brute force, so the size must be bounded).
const MAX_ENTRIES: usize = 100_000;

/// Values by key, each trusted for `ttl` after it was read.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    ttl: Duration,
    entries: RwLock<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    /// An empty cache whose entries live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The cached value, or the one `load` reads (then cached).
    pub async fn get_or_load<E, F>(&self, key: &K, load: F) -> Result<V, E>
    where
        F: Future<Output = Result<V, E>>,
    {
        if let Ok(entries) = self.entries.read()
            && let Some((value, fetched)) = entries.get(key)
            && fetched.elapsed() < self.ttl
        {
            return Ok(value.clone());
        }
        let value = load.await?;
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(key.clone(), (value.clone(), Instant::now()));
        }
        Ok(value)
    }

    /// Forgets a key (after this instance changed it).
    pub fn forget(&self, key: &K) {
        if let Ok(mut entries) = self.entries.write() {
            entries.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn caches_until_ttl_or_forget() {
        let cache = TtlCache::new(Duration::from_millis(50));
        let load = |v: u32| async move { Ok::<_, ()>(v) };
        assert_eq!(cache.get_or_load(&"k", load(1)).await, Ok(1));
        assert_eq!(cache.get_or_load(&"k", load(2)).await, Ok(1), "cached");
        cache.forget(&"k");
        assert_eq!(cache.get_or_load(&"k", load(3)).await, Ok(3), "forgotten");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(cache.get_or_load(&"k", load(4)).await, Ok(4), "expired");
        assert_eq!(
            cache.get_or_load(&"x", async { Err::<u32, _>(()) }).await,
            Err(())
        );
    }
}

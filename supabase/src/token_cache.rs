//! Tokens already verified, so the same token seen again (a browser's every request carries the
//! same one for an hour) skips the signature check and the JSON parsing.
//!
//! An entry is found by a keyed hash of the token and then compared whole, so two tokens never
//! share an entry. It serves until the token's own `exp` (with the same leeway verification
//! allows) and never longer than [`TOKEN_CACHE_MAX_AGE`] after it was verified, so a signing key
//! revoked at the provider stops being trusted about as soon as without the cache. Only tokens
//! that verified are kept, so filling it needs validly signed tokens; it holds at most
//! `capacity` entries all the same (expired ones are dropped first, then arbitrary ones).
//!
//! Hand-written rather than a cache crate (moka, quick_cache): the whole policy is "expire at
//! `exp`, bounded size", which is a `HashMap` under a mutex held for a lookup, and this keeps the
//! hot path free of a crate's background housekeeping.

use crate::jwt::Claims;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest an entry serves after its token was verified.
pub const TOKEN_CACHE_MAX_AGE: Duration = Duration::from_secs(60);
/// Entries kept at most.
pub const TOKEN_CACHE_CAPACITY: usize = 10_000;

struct Entry {
    token: Box<str>,
    /// Verified with the audience required (a user's token) or only checked if present (the
    /// project's keys): one never answers for the other.
    audience_required: bool,
    claims: Arc<Claims>,
    /// Unix seconds: `exp` plus the leeway.
    valid_until: i64,
    cached_until: Instant,
    /// When the JWKS keys that verified it were fetched (`None`: the HS256 secret); the
    /// verifier serves the entry only while those keys are the ones it holds, fresh.
    key_set: Option<Instant>,
}

/// The map's own hasher: its keys are already keyed SipHash values, so they are used as they
/// are instead of being hashed a second time (~250 instructions per lookup).
#[derive(Default)]
struct KeyIsHash(u64);

impl std::hash::Hasher for KeyIsHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys reach this map (`write_u64`); anything else is folded in, never lost.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }
}

type Entries = HashMap<u64, Entry, std::hash::BuildHasherDefault<KeyIsHash>>;

pub struct TokenCache {
    entries: Mutex<Entries>,
    hasher: RandomState,
    capacity: usize,
    max_age: Duration,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl TokenCache {
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        Self {
            entries: Mutex::new(Entries::default()),
            hasher: RandomState::new(),
            capacity: capacity.max(1),
            max_age,
        }
    }

    /// The hash of the token's last 32 bytes: within its signature (HS256's has 43 characters,
    /// RS256's hundreds), which differs with the token's content, so they are as distinct as the
    /// tokens, and a few dozen bytes where the whole token is hundreds. Taken by length rather
    /// than by finding the last `.` (a search cost ~260 instructions). Entries compare the whole
    /// token, so two tokens that share a key never share an entry.
    fn key(&self, token: &str, audience_required: bool) -> u64 {
        let tail = &token.as_bytes()[token.len().saturating_sub(32)..];
        self.hasher.hash_one((tail, audience_required))
    }

    /// The claims of `token` if it verified before and is still within its `exp`, with the key
    /// set it was verified with.
    pub fn get(
        &self,
        token: &str,
        audience_required: bool,
    ) -> Option<(Arc<Claims>, Option<Instant>)> {
        let key = self.key(token, audience_required);
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.get(&key)?;
        let live = *entry.token == *token
            && entry.audience_required == audience_required
            && unix_now() <= entry.valid_until
            && Instant::now() < entry.cached_until;
        live.then(|| (entry.claims.clone(), entry.key_set))
    }

    /// Keeps a verified token until `exp + leeway` (tokens without `exp` are not kept).
    pub fn insert(
        &self,
        token: &str,
        audience_required: bool,
        claims: &Arc<Claims>,
        leeway: Duration,
        key_set: Option<Instant>,
    ) {
        let Some(exp) = claims.exp else {
            return;
        };
        let key = self.key(token, audience_required);
        let now = unix_now();
        let instant = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, e| now <= e.valid_until && instant < e.cached_until);
            if entries.len() >= self.capacity {
                if let Some(victim) = entries.keys().next().copied() {
                    entries.remove(&victim);
                }
            }
        }
        entries.insert(
            key,
            Entry {
                token: token.into(),
                audience_required,
                claims: claims.clone(),
                valid_until: exp.saturating_add(leeway.as_secs() as i64),
                cached_until: instant + self.max_age,
                key_set,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Arc<Claims> {
        Arc::new(
            serde_json::from_value(
                serde_json::json!({"role": "authenticated", "sub": "u", "exp": exp}),
            )
            .unwrap(),
        )
    }

    #[test]
    fn a_flood_of_distinct_tokens_never_grows_it_past_its_capacity() {
        let cache = TokenCache::new(100, Duration::from_secs(60));
        let far = unix_now() + 3600;
        for i in 0..1_000 {
            cache.insert(
                &format!("token-{i}"),
                true,
                &claims(far),
                Duration::ZERO,
                None,
            );
            assert!(cache.len() <= 100);
        }
        assert_eq!(cache.len(), 100);
        // The newest is always kept.
        assert!(cache.get("token-999", true).is_some());
    }

    #[test]
    fn tokens_that_share_a_key_never_answer_for_each_other() {
        let cache = TokenCache::new(10, Duration::from_secs(60));
        let far = unix_now() + 3600;
        let tail = "x".repeat(40);
        let (a, b) = (format!("a.{tail}"), format!("b.{tail}"));
        cache.insert(&a, true, &claims(far), Duration::ZERO, None);
        assert!(cache.get(&a, true).is_some());
        assert!(cache.get(&b, true).is_none(), "same key, another token");
        // The newer takes the slot; the older is verified again when it comes back.
        cache.insert(&b, true, &claims(far), Duration::ZERO, None);
        assert!(cache.get(&b, true).is_some());
        assert!(cache.get(&a, true).is_none());
    }

    #[test]
    fn expired_entries_make_room_first() {
        let cache = TokenCache::new(3, Duration::from_secs(60));
        let now = unix_now();
        cache.insert("old-1", true, &claims(now - 10), Duration::ZERO, None);
        cache.insert("old-2", true, &claims(now - 10), Duration::ZERO, None);
        cache.insert("live", true, &claims(now + 3600), Duration::ZERO, None);
        cache.insert("new", true, &claims(now + 3600), Duration::ZERO, None);
        assert_eq!(cache.len(), 2);
        assert!(cache.get("live", true).is_some());
        assert!(cache.get("new", true).is_some());
    }

    #[test]
    fn an_entry_serves_only_its_own_token_mode_and_lifetime() {
        let cache = TokenCache::new(10, Duration::from_secs(60));
        let now = unix_now();
        cache.insert("a", true, &claims(now + 3600), Duration::ZERO, None);
        assert!(cache.get("a", true).is_some());
        assert!(
            cache.get("a", false).is_none(),
            "audience mode is part of the key"
        );
        assert!(cache.get("b", true).is_none());
        // Past exp (and its leeway): not served, whatever the cache holds.
        cache.insert("expired", true, &claims(now - 1), Duration::ZERO, None);
        assert!(cache.get("expired", true).is_none());
        cache.insert(
            "in-leeway",
            true,
            &claims(now - 1),
            Duration::from_secs(30),
            None,
        );
        assert!(cache.get("in-leeway", true).is_some());
        // Past the cache's own max age.
        let short = TokenCache::new(10, Duration::ZERO);
        short.insert("a", true, &claims(now + 3600), Duration::ZERO, None);
        assert!(short.get("a", true).is_none());
        // No exp: never kept.
        let no_exp: Claims = serde_json::from_value(serde_json::json!({"role": "anon"})).unwrap();
        cache.insert("no-exp", false, &Arc::new(no_exp), Duration::ZERO, None);
        assert!(cache.get("no-exp", false).is_none());
    }
}

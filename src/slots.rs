//! Bounded shared data. Envoy's shared data has no delete and no expiry, so entries keyed by what
//! requests bring (correlation keys, subjects) would pile up for the life of the process. Each kind
//! of entry owns a fixed number of slots instead: a key hashes to a group of `WAYS` neighbouring
//! slots; a slot records a tag of the key it holds, so a lookup never returns another key's entry.
//! A write takes the slot already holding the key, else a free or expired one, else the oldest.
//! An entry can be removed (its slot emptied). Memory stays within slots × entry size whatever the
//! traffic; writes use Envoy's compare-and-swap so workers never interleave.

use sha2::{Digest, Sha256};

use crate::host::SharedData;

/// Slots a key may occupy.
pub const WAYS: u32 = 4;
pub const DEFAULT_SLOTS: u32 = 16_384;
pub const MIN_SLOTS: u32 = 64;
pub const MAX_SLOTS: u32 = 1 << 20;
/// A write that lost a race probes again this many times before giving up.
const RETRIES: usize = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slots {
    /// Names the kind and the count, so filters configured with different counts never read
    /// each other's layout: they just miss.
    prefix: String,
    count: u32,
}

/// Where a key lives: its tag (hex) and first slot.
struct Place {
    tag: String,
    first: u32,
}

/// A stored slot value: `<tag hex> <exp> <written>\n<payload>`; an empty value is a free slot.
struct Stored<'a> {
    tag: &'a str,
    exp: u64,
    written: u64,
    payload_at: usize,
}

fn parse(v: &[u8]) -> Option<Stored<'_>> {
    let nl = v.iter().position(|b| *b == b'\n')?;
    let mut head = std::str::from_utf8(&v[..nl]).ok()?.split(' ');
    let (tag, exp, written) = (head.next()?, head.next()?.parse().ok()?, head.next()?.parse().ok()?);
    Some(Stored { tag, exp, written, payload_at: nl + 1 })
}

fn encode(tag: &str, exp: u64, written: u64, payload: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(80 + payload.len());
    value.extend_from_slice(format!("{tag} {exp} {written}\n").as_bytes());
    value.extend_from_slice(payload);
    value
}

impl Slots {
    pub fn new(kind: &str, count: u32) -> Slots {
        Slots { prefix: format!("actorchain.{kind}.{count}."), count }
    }

    fn place(&self, key: &str) -> Place {
        let digest = Sha256::digest(key.as_bytes());
        let mut tag = String::with_capacity(32);
        crate::cache::push_hex(&mut tag, &digest[..16]);
        let first = u32::from_be_bytes([digest[16], digest[17], digest[18], digest[19]]) % self.count;
        Place { tag, first }
    }

    fn slot_key(&self, first: u32, way: u32) -> String {
        format!("{}{}", self.prefix, (first + way) % self.count)
    }

    /// The slot of `key`'s group that holds it, with its value and version.
    fn find<H: SharedData + ?Sized>(&self, host: &H, p: &Place) -> Option<(String, Vec<u8>, Option<u32>)> {
        (0..WAYS).find_map(|way| {
            let k = self.slot_key(p.first, way);
            let (v, cas) = host.shared_get(&k);
            let v = v?;
            (parse(&v)?.tag == p.tag).then_some((k, v, cas))
        })
    }

    /// The payload stored under `key`, if any slot of its group holds it.
    pub fn get<H: SharedData + ?Sized>(&self, host: &H, key: &str) -> Option<Vec<u8>> {
        let (_, mut v, _) = self.find(host, &self.place(key))?;
        let at = parse(&v)?.payload_at;
        v.drain(..at);
        Some(v)
    }

    /// Stores `payload` under `key` until `exp`.
    pub fn put<H: SharedData + ?Sized>(&self, host: &mut H, key: &str, now: u64, exp: u64, payload: &[u8]) {
        self.write(host, key, now, exp, payload, false)
    }

    /// As `put`, for a key no slot can hold yet (one just minted from 128 random bits): the first
    /// free or expired slot of its group is taken without reading the rest.
    pub fn put_fresh<H: SharedData + ?Sized>(&self, host: &mut H, key: &str, now: u64, exp: u64, payload: &[u8]) {
        self.write(host, key, now, exp, payload, true)
    }

    fn write<H: SharedData + ?Sized>(&self, host: &mut H, key: &str, now: u64, exp: u64, payload: &[u8], fresh: bool) {
        let p = self.place(key);
        let value = encode(&p.tag, exp, now, payload);
        for _ in 0..RETRIES {
            // Rank each slot of the group: (class, written); the lowest is taken. Class 0: this
            // key, 1: free or expired, 2: live.
            let mut best: Option<((u8, u64), String, Option<u32>)> = None;
            for way in 0..WAYS {
                let k = self.slot_key(p.first, way);
                let (v, cas) = host.shared_get(&k);
                let rank = match v.as_deref().and_then(parse) {
                    Some(s) if s.tag == p.tag => (0, 0),
                    Some(s) if s.exp > now => (2, s.written),
                    _ => (1, 0),
                };
                if best.as_ref().is_none_or(|(r, _, _)| rank < *r) {
                    best = Some((rank, k, cas));
                }
                if fresh && rank.0 == 1 {
                    break;
                }
            }
            let Some((_, k, cas)) = best else { return };
            if host.shared_set(&k, &value, cas) {
                return;
            }
        }
    }

    /// Removes `key`'s entry: its slot is emptied, and no later lookup finds it. A write that lost
    /// a race looks again (the slot may have been taken by another key meanwhile: nothing to do).
    pub fn remove<H: SharedData + ?Sized>(&self, host: &mut H, key: &str) {
        let p = self.place(key);
        for _ in 0..RETRIES {
            let Some((k, _, cas)) = self.find(host, &p) else { return };
            if host.shared_set(&k, &[], cas) {
                return;
            }
        }
    }
}

/// The two kinds of entries in shared data: tokens recorded under a request's correlation key by
/// the inbound side (for as long as the request runs), and exchanged tokens cached by the outbound side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedSlots {
    pub trace: Slots,
    pub exchange: Slots,
}

impl SharedSlots {
    pub fn new(count: u32) -> SharedSlots {
        SharedSlots { trace: Slots::new("trace", count), exchange: Slots::new("xchg", count) }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Shared data with versions; `interfere` sets are beaten by another worker's write first.
    #[derive(Default)]
    struct Store(HashMap<String, (Vec<u8>, u32)>, usize);

    impl SharedData for Store {
        fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            self.0.get(key).map_or((None, None), |(v, c)| (Some(v.clone()).filter(|v| !v.is_empty()), Some(*c)))
        }
        fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
            if self.1 > 0 {
                self.1 -= 1;
                let e = self.0.entry(key.to_string()).or_default();
                (e.0, e.1) = (encode(&format!("{:032x}", 99), u64::MAX, 0, b"theirs"), e.1 + 1);
            }
            let version = self.0.get(key).map(|(_, c)| *c);
            if cas.is_some() && cas != version {
                return false;
            }
            self.0.insert(key.to_string(), (value.to_vec(), version.unwrap_or(0) + 1));
            true
        }
    }

    #[test]
    fn stores_finds_and_replaces_by_key() {
        let (slots, mut host) = (Slots::new("t", 64), Store::default());
        slots.put(&mut host, "a", 0, 100, b"one");
        slots.put(&mut host, "b", 0, 100, b"two");
        assert_eq!(slots.get(&host, "a").as_deref(), Some(&b"one"[..]));
        assert_eq!(slots.get(&host, "c"), None);
        slots.put(&mut host, "a", 1, 100, b"uno");
        assert_eq!(slots.get(&host, "a").as_deref(), Some(&b"uno"[..]));
        assert_eq!(host.0.len(), 2);
    }

    #[test]
    fn never_grows_past_its_slots_and_evicts_the_oldest_live_entry() {
        let (slots, mut host) = (Slots::new("t", 64), Store::default());
        for i in 0..10_000u64 {
            slots.put(&mut host, &format!("key-{i}"), i, i + 1_000_000, b"v");
        }
        assert_eq!(host.0.len(), 64);
        // The newest entries survive; the first ones were evicted, never confused with others.
        assert_eq!(slots.get(&host, "key-9999").as_deref(), Some(&b"v"[..]));
        assert_eq!(slots.get(&host, "key-0"), None);
    }

    #[test]
    fn an_expired_entry_then_the_oldest_live_one_makes_room() {
        let other = |i: u8| format!("{:032x}", i);
        // The group of "new" holds four other entries as (exp, written); which one gives way.
        for (group, replaced) in [([(1_000, 1), (5, 9), (1_000, 0), (1_000, 2)], 1), ([(1_000, 1), (1_000, 3), (1_000, 0), (1_000, 2)], 2)]
        {
            let (slots, mut host) = (Slots::new("t", 64), Store::default());
            let p = slots.place("new");
            for (way, (exp, written)) in group.into_iter().enumerate() {
                host.shared_set(&slots.slot_key(p.first, way as u32), &encode(&other(way as u8), exp, written, b"x"), None);
            }
            slots.put(&mut host, "new", 10, 1_000, b"new");
            assert_eq!(slots.get(&host, "new").as_deref(), Some(&b"new"[..]));
            let kept: Vec<bool> = (0..WAYS).map(|w| host.0[&slots.slot_key(p.first, w)].0.ends_with(b"x")).collect();
            assert_eq!(kept, (0..WAYS as usize).map(|w| w != replaced).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_removed_entry_is_gone_and_its_slot_free() {
        let (slots, mut host) = (Slots::new("t", 64), Store::default());
        slots.put(&mut host, "a", 0, 100, b"one");
        slots.put(&mut host, "b", 0, 100, b"two");
        slots.remove(&mut host, "a");
        assert_eq!(slots.get(&host, "a"), None);
        assert_eq!(slots.get(&host, "b").as_deref(), Some(&b"two"[..]));
        assert!(host.0.values().any(|(v, _)| v.is_empty()));
        // Removing what is not there changes nothing.
        slots.remove(&mut host, "c");
        assert_eq!(slots.get(&host, "b").as_deref(), Some(&b"two"[..]));
    }

    #[test]
    fn a_write_that_lost_a_race_probes_again() {
        let (slots, mut host) = (Slots::new("t", 64), Store::default());
        slots.put(&mut host, "k", 0, 100, b"v");
        host.1 = 1;
        slots.put(&mut host, "k", 1, 100, b"w");
        assert_eq!(slots.get(&host, "k").as_deref(), Some(&b"w"[..]));
        // The other worker's entry was not overwritten: it took another slot of the group.
        assert!(host.0.values().any(|(v, _)| v.ends_with(b"theirs")));
    }

    #[test]
    fn a_fresh_key_takes_the_first_free_slot_and_reads_no_further() {
        let other = |i: u8| format!("{:032x}", i);
        let (slots, mut host) = (Slots::new("t", 64), Store::default());
        let p = slots.place("fresh");
        // Way 0 live, way 1 expired, ways 2 and 3 live and older.
        for (way, (exp, written)) in [(1_000, 5), (5, 9), (1_000, 0), (1_000, 1)].into_iter().enumerate() {
            host.shared_set(&slots.slot_key(p.first, way as u32), &encode(&other(way as u8), exp, written, b"x"), None);
        }
        // A slot past the first free one is left unread: an unreadable value there changes nothing.
        host.0.get_mut(&slots.slot_key(p.first, 2)).unwrap().0 = b"not a slot".to_vec();
        slots.put_fresh(&mut host, "fresh", 10, 1_000, b"new");
        assert_eq!(slots.get(&host, "fresh").as_deref(), Some(&b"new"[..]));
        assert!(host.0[&slots.slot_key(p.first, 0)].0.ends_with(b"x"), "the live entry before it stays");
        assert_eq!(host.0[&slots.slot_key(p.first, 2)].0, b"not a slot");
        // With no free slot, the oldest live one gives way, as for `put`.
        let (slots, mut host) = (Slots::new("t", 64), Store::default());
        for (way, written) in [3, 1, 0, 2].into_iter().enumerate() {
            host.shared_set(&slots.slot_key(p.first, way as u32), &encode(&other(way as u8), 1_000, written, b"x"), None);
        }
        slots.put_fresh(&mut host, "fresh", 10, 1_000, b"new");
        assert!(!host.0[&slots.slot_key(p.first, 2)].0.ends_with(b"x"));
    }

    #[test]
    fn different_counts_never_share_slots() {
        let mut host = Store::default();
        Slots::new("t", 64).put(&mut host, "k", 0, 100, b"v");
        assert_eq!(Slots::new("t", 128).get(&host, "k"), None);
    }
}

//! Correlation: how the outbound side finds the request an app's outgoing call continues when the
//! app propagates trace context but not the token.
//!
//! The key is never the caller's to choose. The inbound filter mints a fresh one (128 random bits)
//! for every request it accepts, records the accepted token under it, and hands it to the app as
//! our own member, `actorchain=<key>`, of the W3C `tracestate` and (by default) `baggage` headers,
//! which trace-context libraries propagate without knowing what it is; the trace id itself is left
//! alone. `baggage` is what survives Envoy's own tracing: its tracer rewrites `tracestate` towards
//! the app from what the caller sent. A request that arrives with a member of our name is refused
//! (a caller's could come back through that rewrite), and the outbound side removes ours before a
//! call leaves the workload. The record lives exactly as long as its request.
//!
//! Apps that propagate only `x-request-id` are served when the inbound configuration says so
//! (`correlation.x_request_id`): the inbound side then replaces the caller's `x-request-id` with
//! the key, and only records made that way may be found through `x-request-id`.

use sha2::{Digest, Sha256};

use crate::cache::{self, Entry};

/// Our member's key in `tracestate` and `baggage`.
pub const MEMBER: &str = "actorchain";
/// A key: 128 bits as lower-case hex.
pub const KEY_LEN: usize = 32;

/// A W3C list header our member travels in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListHeader {
    TraceState,
    Baggage,
}

impl ListHeader {
    pub const ALL: [ListHeader; 2] = [ListHeader::TraceState, ListHeader::Baggage];

    /// Its place in `ALL` (and in arrays of values kept in that order).
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            ListHeader::TraceState => "tracestate",
            ListHeader::Baggage => "baggage",
        }
    }

    /// The most members the spec lets a header carry.
    fn max_members(self) -> usize {
        match self {
            ListHeader::TraceState => 32,
            ListHeader::Baggage => 64,
        }
    }
}

/// Mints keys: SHA-256 over a secret 256-bit seed (from the host's CSPRNG, once per worker) and a
/// counter. Unpredictable without the seed, and no host call on the request path.
#[derive(Debug)]
pub struct Minter {
    seed: [u8; 32],
    counter: u64,
}

impl Minter {
    pub fn new(seed: [u8; 32]) -> Minter {
        Minter { seed, counter: 0 }
    }

    fn next(&mut self) -> [u8; 32] {
        self.counter += 1;
        let mut h = Sha256::new();
        h.update(self.seed);
        h.update(self.counter.to_be_bytes());
        h.finalize().into()
    }

    /// A fresh correlation key.
    pub fn key(&mut self) -> String {
        let mut key = String::with_capacity(KEY_LEN);
        cache::push_hex(&mut key, &self.next()[..KEY_LEN / 2]);
        key
    }

    /// A fresh W3C `traceparent` (not sampled), for a request that arrived without one: without
    /// it, trace-context libraries drop `tracestate` and with it the key.
    pub fn traceparent(&mut self) -> String {
        let r = self.next();
        let mut tp = String::with_capacity(55);
        tp.push_str("00-");
        cache::push_hex(&mut tp, &r[..16]);
        tp.push('-');
        cache::push_hex(&mut tp, &r[16..24]);
        tp.push_str("-00");
        tp
    }
}

/// Whether `s` has the shape of a key we mint (anything else is never looked up).
pub fn is_key(s: &str) -> bool {
    s.len() == KEY_LEN && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// W3C `traceparent`: `00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>`, trace-id not all zero.
pub fn is_traceparent(tp: &str) -> bool {
    let mut parts = tp.split('-');
    let (Some(version), Some(trace), Some(parent), Some(flags)) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    hex(version, 2) && version != "ff" && hex(trace, 32) && trace.bytes().any(|b| b != b'0') && hex(parent, 16) && hex(flags, 2)
}

/// A list member's key and value (`tracestate` and `baggage` share this syntax; a `baggage`
/// member's properties stay part of its value, so one with properties is never a key).
fn member(m: &str) -> Option<(&str, &str)> {
    m.split_once('=').map(|(k, v)| (k.trim(), v.trim()))
}

/// Whether a member is ours, in any casing (keys are lower-case by the spec; a caller's variant
/// is still never passed on).
fn is_ours(m: &str) -> bool {
    member(m).is_some_and(|(k, _)| k.eq_ignore_ascii_case(MEMBER))
}

/// Whether any of a list header's values carries a member of our name.
pub fn has_member(values: &[&str]) -> bool {
    values.iter().flat_map(|v| v.split(',')).any(is_ours)
}

/// The list header an app is handed: our member with `key` first (W3C `tracestate`: the newest
/// member goes left), then the other members, dropping the rightmost past the spec's limit.
pub fn list_with(header: ListHeader, key: &str, values: &[&str]) -> String {
    let mut out = String::with_capacity(MEMBER.len() + 1 + KEY_LEN + values.iter().map(|v| v.len() + 1).sum::<usize>());
    out.push_str(MEMBER);
    out.push('=');
    out.push_str(key);
    for m in others(values).take(header.max_members() - 1) {
        out.push(',');
        out.push_str(m);
    }
    out
}

/// A list header without any member of our name; `None` when nothing else is left.
pub fn list_without(values: &[&str]) -> Option<String> {
    let rest: Vec<&str> = others(values).collect();
    (!rest.is_empty()).then(|| rest.join(","))
}

fn others<'a>(values: &'a [&'a str]) -> impl Iterator<Item = &'a str> + 'a {
    values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|m| !m.is_empty() && !is_ours(m))
}

/// The key our member carries in a list header of the app's outgoing call, if it has the shape of one.
pub fn key_in<'a>(values: &[&'a str]) -> Option<&'a str> {
    values.iter().flat_map(|v| v.split(',')).filter_map(member).find(|(k, _)| *k == MEMBER).map(|(_, v)| v).filter(|v| is_key(v))
}

/// Where a key was handed over, and where the outbound side found one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    List(ListHeader),
    RequestId,
}

impl Carrier {
    fn bit(self) -> u8 {
        match self {
            Carrier::List(ListHeader::TraceState) => 1,
            Carrier::List(ListHeader::Baggage) => 2,
            Carrier::RequestId => 4,
        }
    }
}

/// A record: the carriers the inbound side handed the key over in (a key is honoured only where
/// it was put), as one digit, then the accepted request's entry.
pub fn encode_record(entry: &Entry<'_>, carriers: &[Carrier]) -> Vec<u8> {
    let mut v = vec![b'0' + carriers.iter().fold(0, |bits, c| bits | c.bit())];
    v.extend_from_slice(&entry.encode());
    v
}

/// The entry of a record found through `carrier`; `None` if the record may not be found that way.
pub fn decode_record(bytes: &[u8], carrier: Carrier) -> Option<Entry<'_>> {
    let (flag, rest) = bytes.split_first()?;
    (flag.wrapping_sub(b'0') & carrier.bit() != 0).then(|| Entry::decode(rest)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fresh_and_well_formed() {
        let mut m = Minter::new([7; 32]);
        let (a, b) = (m.key(), m.key());
        assert!(is_key(&a) && is_key(&b));
        assert_ne!(a, b);
        assert_ne!(Minter::new([8; 32]).key(), Minter::new([7; 32]).key());
        assert!(is_traceparent(&m.traceparent()));
        assert!(!is_key("4BF92F3577B34DA6A3CE929D0E0E4736"));
        assert!(!is_key("4bf92f35"));
    }

    #[test]
    fn parses_traceparent_strictly() {
        assert!(is_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        assert!(!is_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
        assert!(!is_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
        assert!(!is_traceparent("00-4bf92f35-00f067aa0ba902b7-01"));
    }

    #[test]
    fn callers_members_of_our_name_never_pass() {
        let key = "0123456789abcdef0123456789abcdef";
        let incoming = ["congo=t61rcWkgMzE, actorchain=ffffffffffffffffffffffffffffffff", "ActorChain=x,rojo=00f067aa0ba902b7"];
        assert!(has_member(&incoming));
        let ts = ListHeader::TraceState;
        assert_eq!(list_with(ts, key, &incoming), format!("actorchain={key},congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"));
        assert_eq!(list_without(&incoming).as_deref(), Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"));
        assert_eq!(list_without(&["actorchain=1"]), None);
        assert_eq!(key_in(&[&format!("actorchain={key},congo=1")]), Some(key));
        assert_eq!(key_in(&["actorchain=not-a-key"]), None);
        // A baggage member with properties is not a key.
        assert_eq!(key_in(&[&format!("userId=alice, actorchain={key};p=1")]), None);
        assert!(has_member(&[&format!("userId=alice, actorchain={key};p=1")]));
        // At most 32 tracestate members and 64 baggage members, ours first.
        let many: Vec<String> = (0..80).map(|i| format!("v{i}=x")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(list_with(ts, key, &many).split(',').count(), 32);
        assert_eq!(list_with(ListHeader::Baggage, key, &many).split(',').count(), 64);
    }

    #[test]
    fn records_say_how_they_may_be_found() {
        let e = Entry { exp: 9, iat: 1, jti: "j", sid: "s", sub_iss: "https://idp", sub: "u", agents: "", token: "t.o.k" };
        let (ts, bg) = (Carrier::List(ListHeader::TraceState), Carrier::List(ListHeader::Baggage));
        let only_ts = encode_record(&e, &[ts]);
        assert_eq!(decode_record(&only_ts, ts).map(|e| e.token), Some("t.o.k"));
        assert_eq!(decode_record(&only_ts, Carrier::RequestId), None);
        assert_eq!(decode_record(&only_ts, bg), None);
        let all = encode_record(&e, &[ts, bg, Carrier::RequestId]);
        assert!([ts, bg, Carrier::RequestId].iter().all(|c| decode_record(&all, *c).is_some()));
        assert_eq!(decode_record(b"", ts), None);
    }
}

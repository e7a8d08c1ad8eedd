//! Token parsing and verification: no input panics, and whatever is accepted meets every rule.
//! The first byte picks the mode: the input as a compact token, or the input as the payload of a
//! token correctly signed with the trusted key (so claim and chain checks see arbitrary JSON).
#![no_main]

use actorchain_token::{sign_compact, verify, Alg, ChainLimits, Expectations, KeySet, PrivateKey, TimeWindow, Unverified};
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else { return };
    let key = PrivateKey::from_secret_bytes(Alg::EdDsa, &[7; 32]).unwrap();
    let mut keys = KeySet::default();
    keys.insert("k1".into(), key.public()).unwrap();
    let exp = Expectations { issuer: "https://sts", audience: "agent-b", window: TimeWindow::default(), limits: ChainLimits::default() };
    let token = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let Ok(payload) = serde_json::from_slice::<serde_json::Value>(rest) else { return };
        sign_compact(&payload, &key, "k1", Some("at+jwt"))
    };
    let _ = Unverified::peek(&token).map(|u| u.claims::<serde_json::Value>());
    if let Ok(c) = verify(&token, &keys, &exp, NOW) {
        assert_eq!(c.iss, "https://sts");
        assert_eq!(c.aud, "agent-b");
        assert!(NOW < c.exp + 30 && c.nbf <= NOW + 30);
        assert_eq!(c.client_id, c.act.sub);
        assert!(c.act.depth() <= ChainLimits::default().max_depth);
        assert_eq!((c.sub_id.format.as_str(), c.sub_id.sub.as_str()), ("iss_sub", c.sub.as_str()));
    }
});

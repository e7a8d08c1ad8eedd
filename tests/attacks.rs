//! Attacks against the token rules, sent for real: each hostile token goes to the investigation
//! agent's Envoy sidecar (inbound filter, presented over mTLS by the on-call workload the token
//! names) and, as `subject_token`, to the STS's `/token` (presented by the investigation
//! workload). Every outcome is compared with the expected one and the whole table is what
//! `docs/hardening-attacks.md` says; `make hardening-docs` rewrites it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actorchain_demo::hostile::{self, der_signature, non_canonical_s, Forge, Row, P256_N};
use actorchain_demo::scenario::tools_call;
use actorchain_demo::topology::{Demo, Paths, Tuning};
use actorchain_sts::dev;
use actorchain_sts::https_client::{Connection, Reply};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};

use actorchain_token::wire::{GRANT_TOKEN_EXCHANGE as TOKEN_EXCHANGE, TT_JWT};

/// What a target is expected to answer: an HTTP status and the machine-readable reason.
#[derive(Clone, Copy)]
struct Expect(u16, &'static str);

impl Expect {
    fn show(self) -> String {
        format!("{} {}", self.0, self.1)
    }
}

const ACCEPTED: Expect = Expect(200, "accepted");
const GRANTED: Expect = Expect(200, "granted");

fn deny(reason: &'static str) -> (Option<Expect>, Option<Expect>) {
    (Some(Expect(401, reason)), Some(Expect(400, reason)))
}

struct Case {
    id: &'static str,
    attack: String,
    /// `Authorization` values sent to the sidecar, as bytes (some are not UTF-8 on purpose).
    authorization: Vec<Vec<u8>>,
    subject: Option<String>,
    filter: Option<Expect>,
    sts: Option<Expect>,
}

fn token_case(id: &'static str, attack: &str, token: String, (filter, sts): (Option<Expect>, Option<Expect>)) -> Case {
    Case { id, attack: attack.to_string(), authorization: vec![format!("Bearer {token}").into_bytes()], subject: Some(token), filter, sts }
}

fn header_case(id: &'static str, attack: &str, values: Vec<Vec<u8>>, expect: Expect) -> Case {
    Case { id, attack: attack.to_string(), authorization: values, subject: None, filter: Some(expect), sts: None }
}

fn with(mut v: Value, key: &str, val: Value) -> Value {
    v[key] = val;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

/// Replaces `"key":<value as serialized>` in the JSON text with `replacement` text.
fn raw_member(v: &Value, key: &str, replacement: &str) -> String {
    let text = v.to_string();
    let old = format!("\"{key}\":{}", v[key]);
    assert!(text.contains(&old), "{key} not found in {text}");
    text.replace(&old, replacement)
}

fn token_cases(f: &Forge, canary: u16) -> Vec<Case> {
    let h = f.header();
    let c = f.claims("hostile-session");
    let good = f.sign(&h, &c);
    let (hp, sig) = good.rsplit_once('.').unwrap();
    let sig_bytes = B64.decode(sig).unwrap();
    let ed_sig = f.signature(&h, &c);
    let aud_refused = (Some(Expect(401, "audience_mismatch")), Some(Expect(400, "subject_not_addressed_to_agent")));
    let untrusted = deny("issuer_untrusted");
    let stranger_signed = |header: &Value| f.sign_text(&header.to_string(), &c.to_string(), &f.stranger);
    let deep_act = (0..12).fold(json!({"sub": "oncall-agent", "spiffe_id": c["act"]["spiffe_id"]}), |inner, i| {
        json!({"sub": if i == 11 { "oncall-agent".to_string() } else { format!("agent-{i}") }, "spiffe_id": c["act"]["spiffe_id"], "act": inner})
    });
    let mut cases = vec![
        token_case("baseline", "a well-formed token from the STS's own key (control)", good.clone(), (Some(ACCEPTED), Some(GRANTED))),
        token_case(
            "alg-none",
            "`alg: none`, empty signature",
            f.with_signature(&with(h.clone(), "alg", json!("none")), &c, b""),
            deny("alg_not_allowed"),
        ),
        token_case("alg-None", "`alg: None`, real signature", f.sign(&with(h.clone(), "alg", json!("None")), &c), deny("alg_not_allowed")),
        token_case("alg-NONE", "`alg: NONE`", f.sign(&with(h.clone(), "alg", json!("NONE")), &c), deny("alg_not_allowed")),
        token_case("alg-nOnE", "`alg: nOnE`", f.sign(&with(h.clone(), "alg", json!("nOnE")), &c), deny("alg_not_allowed")),
        token_case("alg-empty", "`alg` empty string", f.sign(&with(h.clone(), "alg", json!("")), &c), deny("alg_not_allowed")),
        token_case("alg-missing", "no `alg`", f.sign(&without(h.clone(), "alg"), &c), deny("token_bad_json")),
        token_case(
            "alg-eddsa-case",
            "`alg: eddsa` (case changed)",
            f.sign(&with(h.clone(), "alg", json!("eddsa")), &c),
            deny("alg_not_allowed"),
        ),
        token_case(
            "hs256-public-key",
            "HS256 MACed with the STS's public key bytes",
            f.hs256_with_public_key(&with(h.clone(), "alg", json!("HS256")), &c),
            deny("alg_not_allowed"),
        ),
        token_case("rs256", "`alg: RS256`", f.sign(&with(h.clone(), "alg", json!("RS256")), &c), deny("alg_not_allowed")),
        token_case(
            "alg-key-mismatch",
            "`alg: ES256` naming the STS's Ed25519 key",
            f.sign(&with(h.clone(), "alg", json!("ES256")), &c),
            deny("alg_key_mismatch"),
        ),
        token_case(
            "embedded-jwk",
            "attacker's key embedded as `jwk`, signed with it",
            stranger_signed(&with(h.clone(), "jwk", f.stranger_jwk())),
            deny("embedded_key_header"),
        ),
        token_case(
            "jku",
            "`jku` pointing at an attacker's server (must not be fetched)",
            stranger_signed(&with(h.clone(), "jku", json!(format!("https://127.0.0.1:{canary}/jwks")))),
            deny("embedded_key_header"),
        ),
        token_case(
            "x5u",
            "`x5u` pointing at an attacker's server (must not be fetched)",
            stranger_signed(&with(h.clone(), "x5u", json!(format!("https://127.0.0.1:{canary}/cert")))),
            deny("embedded_key_header"),
        ),
        token_case(
            "x5c",
            "`x5c` certificate chain in the header",
            stranger_signed(&with(h.clone(), "x5c", json!(["MIIBszCCAVmgAwIBAgIUQ"]))),
            deny("embedded_key_header"),
        ),
        token_case("kid-empty", "`kid` empty", f.sign(&with(h.clone(), "kid", json!("")), &c), deny("kid_invalid")),
        token_case("kid-missing", "no `kid`", f.sign(&without(h.clone(), "kid"), &c), deny("kid_missing")),
        token_case("kid-null", "`kid: null`", f.sign(&with(h.clone(), "kid", Value::Null), &c), deny("kid_missing")),
        token_case(
            "kid-traversal",
            "`kid: ../../../../etc/passwd`",
            f.sign(&with(h.clone(), "kid", json!("../../../../etc/passwd")), &c),
            deny("kid_unknown"),
        ),
        token_case("kid-sql", "`kid` with SQL and spaces", f.sign(&with(h.clone(), "kid", json!("x' OR '1'='1")), &c), deny("kid_invalid")),
        token_case(
            "kid-huge",
            "`kid` of 4,000 characters",
            f.sign(&with(h.clone(), "kid", json!("k".repeat(4000))), &c),
            deny("kid_invalid"),
        ),
        token_case("kid-number", "`kid` a number", f.sign(&with(h.clone(), "kid", json!(7)), &c), deny("token_bad_json")),
        token_case("kid-object", "`kid` an object", f.sign(&with(h.clone(), "kid", json!({"$ne": ""})), &c), deny("token_bad_json")),
        token_case("sig-empty", "signature part empty", format!("{hp}."), deny("token_malformed")),
        token_case(
            "sig-63",
            "Ed25519 signature one byte short",
            format!("{hp}.{}", B64.encode(&sig_bytes[..63])),
            deny("signature_invalid"),
        ),
        token_case(
            "sig-65",
            "Ed25519 signature one byte long",
            format!("{hp}.{}", B64.encode([&sig_bytes[..], &[0]].concat())),
            deny("signature_invalid"),
        ),
        token_case("sig-zero", "64 zero bytes as signature", f.with_signature(&h, &c, &[0; 64]), deny("signature_invalid")),
        token_case(
            "sig-non-canonical-s",
            "Ed25519 S replaced by S + L (same value mod L)",
            f.with_signature(&h, &c, &non_canonical_s(&ed_sig)),
            deny("signature_invalid"),
        ),
        token_case("sig-der", "signature wrapped in DER", f.with_signature(&h, &c, &der_signature(&ed_sig)), deny("signature_invalid")),
        token_case("sig-other-key", "signed by a key nobody trusts, under the STS's kid", stranger_signed(&h), deny("signature_invalid")),
        token_case(
            "sig-bit-flip",
            "one signature bit flipped",
            f.with_signature(&h, &c, &[&[ed_sig[0] ^ 1][..], &ed_sig[1..]].concat()),
            deny("signature_invalid"),
        ),
        token_case(
            "payload-swapped",
            "payload changed after signing (another person, consistently)",
            format!(
                "{}.{}.{sig}",
                hp.split('.').next().unwrap(),
                B64.encode(
                    with(
                        with(c.clone(), "sub", json!("admin")),
                        "sub_id",
                        json!({"format": "iss_sub", "iss": dev::IDP_ISSUER, "sub": "admin"})
                    )
                    .to_string()
                )
            ),
            deny("signature_invalid"),
        ),
        token_case("b64-padding", "base64 padding `=` on the signature", format!("{good}="), deny("token_bad_base64")),
        token_case(
            "b64-std-alphabet",
            "standard-alphabet `+` in the payload",
            format!("{}.+{}", hp.split('.').next().unwrap(), &good[hp.find('.').unwrap() + 2..]),
            deny("token_bad_base64"),
        ),
        token_case(
            "b64-trailing-bits",
            "non-canonical trailing bits in the signature",
            format!("{hp}.{}", non_canonical_tail(sig)),
            deny("token_bad_base64"),
        ),
        token_case("two-parts", "two parts only", hp.to_string(), deny("token_malformed")),
        token_case("five-parts", "five parts (JWE shape)", format!("{good}.x.y"), deny("token_malformed")),
        token_case(
            "dup-alg",
            "duplicate `alg` in the header",
            f.sign_text(&format!(r#"{{"alg":"none","alg":"EdDSA","kid":"{}","typ":"at+jwt"}}"#, f.sts_kid), &c.to_string(), &f.sts_key),
            deny("token_bad_json"),
        ),
        token_case(
            "dup-aud",
            "duplicate `aud` in the payload",
            f.sign_text(&h.to_string(), &raw_member(&c, "aud", r#""aud":"mcp-gateway","aud":"investigation-agent""#), &f.sts_key),
            deny("claims_invalid"),
        ),
        token_case(
            "dup-exp",
            "duplicate `exp`",
            f.sign_text(&h.to_string(), &raw_member(&c, "exp", &format!(r#""exp":{},"exp":{}"#, f.now + 99_999, c["exp"])), &f.sts_key),
            deny("claims_invalid"),
        ),
        token_case(
            "dup-act",
            "duplicate `act`",
            f.sign_text(
                &h.to_string(),
                &raw_member(
                    &c,
                    "act",
                    &format!(r#""act":{{"sub":"root","spiffe_id":"spiffe://actorchain.dev/workload/admin"}},"act":{}"#, c["act"]),
                ),
                &f.sts_key,
            ),
            deny("claims_invalid"),
        ),
        token_case(
            "header-array",
            "header is a JSON array",
            f.sign_text(r#"["EdDSA"]"#, &c.to_string(), &f.sts_key),
            deny("token_bad_json"),
        ),
        token_case(
            "header-deep",
            "header nested three levels",
            f.sign(&with(h.clone(), "x", json!({"y": {"z": 1}})), &c),
            deny("token_json_too_deep"),
        ),
        token_case(
            "payload-deep",
            "payload nested 64 levels in `ext`",
            f.sign(
                &h,
                &with(
                    c.clone(),
                    "ext",
                    json!({"x": serde_json::from_str::<Value>(&format!("{}{}", "[".repeat(64), "]".repeat(64))).unwrap()}),
                ),
            ),
            deny("token_json_too_deep"),
        ),
        token_case("act-12-deep", "`act` chain 12 deep (limit 8)", f.sign(&h, &with(c.clone(), "act", deep_act)), deny("chain_too_deep")),
        token_case(
            "act-1000-deep",
            "`act` nested 1,000 deep",
            f.sign_text(&h.to_string(), &raw_member(&c, "act", &nested_act(1000)), &f.sts_key),
            deny("token_oversized"),
        ),
        token_case(
            "act-100-deep",
            "`act` nested 100 deep (fits the size limit)",
            f.sign_text(&h.to_string(), &raw_member(&c, "act", &nested_act(100)), &f.sts_key),
            deny("token_json_too_deep"),
        ),
        token_case(
            "oversized",
            "token of 9 KB",
            f.sign(&h, &with(c.clone(), "ext", json!({"pad": "x".repeat(7000)}))),
            deny("token_oversized"),
        ),
        token_case("crit", "unknown `crit` extension", f.sign(&with(h.clone(), "crit", json!(["exp"])), &c), deny("crit_unsupported")),
        token_case("typ-missing", "no `typ`", f.sign(&without(h.clone(), "typ"), &c), deny("typ_invalid")),
        token_case(
            "typ-jwt",
            "`typ: JWT` (an ID token or JWT-SVID shape)",
            f.sign(&with(h.clone(), "typ", json!("JWT")), &c),
            deny("typ_invalid"),
        ),
        token_case("typ-secevent", "`typ: secevent+jwt`", f.sign(&with(h.clone(), "typ", json!("secevent+jwt")), &c), deny("typ_invalid")),
        token_case(
            "typ-media-type",
            "`typ: application/at+jwt` (RFC 7515 allows the prefix)",
            f.sign(&with(h.clone(), "typ", json!("application/at+jwt")), &c),
            (Some(ACCEPTED), Some(GRANTED)),
        ),
        token_case("aud-missing", "no `aud`", f.sign(&h, &without(c.clone(), "aud")), deny("claims_invalid")),
        token_case(
            "aud-wrong",
            "`aud` another agent (replay to another audience)",
            f.sign(&h, &with(c.clone(), "aud", json!("mcp-gateway"))),
            aud_refused,
        ),
        token_case(
            "aud-array",
            "`aud` an array holding the right audience",
            f.sign(&h, &with(c.clone(), "aud", json!(["investigation-agent"]))),
            deny("claims_invalid"),
        ),
        token_case(
            "aud-spiffe",
            "`aud` the workload's SPIFFE ID instead of the agent",
            f.sign(&h, &with(c.clone(), "aud", json!("spiffe://actorchain.dev/workload/investigation"))),
            aud_refused,
        ),
        token_case(
            "aud-scheme",
            "`aud` with a scheme",
            f.sign(&h, &with(c.clone(), "aud", json!("https://investigation-agent"))),
            aud_refused,
        ),
        token_case(
            "aud-slash",
            "`aud` with a trailing slash",
            f.sign(&h, &with(c.clone(), "aud", json!("investigation-agent/"))),
            aud_refused,
        ),
        token_case("aud-case", "`aud` in other case", f.sign(&h, &with(c.clone(), "aud", json!("Investigation-Agent"))), aud_refused),
        token_case(
            "iss-prefix",
            "`iss` a prefix of the STS's",
            f.sign(&h, &with(c.clone(), "iss", json!("https://sts.actorchain"))),
            untrusted,
        ),
        token_case(
            "iss-suffix",
            "`iss` the STS's with a suffix",
            f.sign(&h, &with(c.clone(), "iss", json!("https://sts.actorchain.dev.evil.example"))),
            untrusted,
        ),
        token_case(
            "iss-slash",
            "`iss` with a trailing slash",
            f.sign(&h, &with(c.clone(), "iss", json!("https://sts.actorchain.dev/"))),
            untrusted,
        ),
        token_case("iss-missing", "no `iss`", f.sign(&h, &without(c.clone(), "iss")), deny("claims_invalid")),
        token_case("exp-missing", "no `exp`", f.sign(&h, &without(c.clone(), "exp")), deny("claims_invalid")),
        token_case(
            "exp-past-skew",
            "`exp` 31 s ago (skew is 30 s)",
            f.sign(&h, &with(with(with(c.clone(), "exp", json!(f.now - 31)), "iat", json!(f.now - 100)), "nbf", json!(f.now - 100))),
            deny("token_expired"),
        ),
        token_case(
            "exp-now",
            "`exp` equal to now: the filter allows its 30 s skew; the STS mints nothing born expired",
            f.sign(&h, &with(c.clone(), "exp", json!(f.now))),
            (Some(ACCEPTED), Some(Expect(400, "token_expired"))),
        ),
        token_case(
            "exp-float",
            "`exp` a float",
            f.sign_text(&h.to_string(), &raw_member(&c, "exp", &format!(r#""exp":{}.5"#, f.now + 300)), &f.sts_key),
            deny("claims_invalid"),
        ),
        token_case(
            "exp-string",
            "`exp` a string",
            f.sign(&h, &with(c.clone(), "exp", json!((f.now + 300).to_string()))),
            deny("claims_invalid"),
        ),
        token_case("exp-negative", "`exp` negative", f.sign(&h, &with(c.clone(), "exp", json!(-1))), deny("claims_invalid")),
        token_case(
            "exp-overflow",
            "`exp` 2^64 (overflows u64)",
            f.sign_text(&h.to_string(), &raw_member(&c, "exp", r#""exp":18446744073709551616"#), &f.sts_key),
            deny("claims_invalid"),
        ),
        token_case(
            "exp-far",
            "`exp` in the year 292 billion",
            f.sign(&h, &with(c.clone(), "exp", json!(u64::MAX / 2))),
            deny("token_times_invalid"),
        ),
        token_case(
            "nbf-future",
            "`nbf` 2 min ahead (beyond skew)",
            f.sign(&h, &with(with(c.clone(), "nbf", json!(f.now + 120)), "iat", json!(f.now + 120))),
            deny("token_not_yet_valid"),
        ),
        token_case(
            "iat-future",
            "`iat` 2 min ahead (beyond skew)",
            f.sign(&h, &with(c.clone(), "iat", json!(f.now + 120))),
            deny("token_issued_in_future"),
        ),
        token_case("act-missing", "no `act`", f.sign(&h, &without(c.clone(), "act")), deny("claims_invalid")),
        token_case(
            "act-mismatch",
            "`client_id` not the current actor",
            f.sign(&h, &with(c.clone(), "client_id", json!("investigation-agent"))),
            deny("chain_actor_mismatch"),
        ),
        token_case(
            "act-not-spiffe",
            "actor's `spiffe_id` not a SPIFFE ID",
            f.sign(&h, &with(c.clone(), "act", json!({"sub": "oncall-agent", "spiffe_id": "oncall"}))),
            deny("chain_malformed"),
        ),
        token_case(
            "act-extra-claims",
            "privileges smuggled into `act` (`scope`)",
            f.sign(&h, &with(c.clone(), "act", json!({"sub": "oncall-agent", "spiffe_id": c["act"]["spiffe_id"], "scope": "admin"}))),
            deny("claims_invalid"),
        ),
        token_case(
            "unknown-claim",
            "unknown top-level claim `admin: true`",
            f.sign(&h, &with(c.clone(), "admin", json!(true))),
            deny("claims_invalid"),
        ),
        token_case(
            "sub-id-missing",
            "no `sub_id`: a subject without its issuer",
            f.sign(&h, &without(c.clone(), "sub_id")),
            deny("claims_invalid"),
        ),
        token_case(
            "sub-id-other-person",
            "`sub_id` naming another person than `sub`",
            f.sign(&h, &with(c.clone(), "sub_id", json!({"format": "iss_sub", "iss": dev::IDP_ISSUER, "sub": "admin"}))),
            deny("claims_invalid"),
        ),
        token_case(
            "sub-id-format",
            "`sub_id` in another RFC 9493 format (`opaque`)",
            f.sign(&h, &with(c.clone(), "sub_id", json!({"format": "opaque", "id": "user1"}))),
            deny("claims_invalid"),
        ),
    ];
    let auth = |v: &str| v.as_bytes().to_vec();
    cases.extend([
        header_case(
            "bearer-lowercase",
            "`bearer` scheme in lower case (RFC 7235: case-insensitive)",
            vec![auth(&format!("bearer {good}"))],
            ACCEPTED,
        ),
        header_case(
            "bearer-two-spaces",
            "two spaces after `Bearer`",
            vec![auth(&format!("Bearer  {good}"))],
            Expect(400, "bearer_malformed"),
        ),
        header_case("bearer-alone", "`Bearer` and nothing", vec![auth("Bearer")], Expect(400, "bearer_malformed")),
        header_case(
            "bearer-comma",
            "two tokens in one header",
            vec![auth(&format!("Bearer {good}, Bearer {good}"))],
            Expect(400, "bearer_malformed"),
        ),
        header_case("bearer-basic", "`Basic` credentials instead", vec![auth("Basic dXNlcjE6cGFzcw==")], Expect(401, "token_missing")),
        header_case("bearer-no-space", "`Bearer` glued to the token", vec![auth(&format!("Bearer{good}"))], Expect(401, "token_missing")),
        header_case(
            "two-headers",
            "two `Authorization` headers (Envoy folds them into one value)",
            vec![auth(&format!("Bearer {good}")), auth(&format!("Bearer {good}"))],
            Expect(400, "bearer_malformed"),
        ),
        header_case(
            "non-utf8",
            "token bytes that are not UTF-8",
            vec![[b"Bearer ".as_slice(), &[0xff, 0xfe], hp.as_bytes()].concat()],
            Expect(400, "bearer_malformed"),
        ),
        // The SDK's string getters panic on such bytes, which would kill the VM for every request.
        header_case(
            "after-non-utf8",
            "a good token right after them: the filter is still there",
            vec![auth(&format!("Bearer {good}"))],
            ACCEPTED,
        ),
        header_case(
            "header-100k",
            "100 KB `Authorization` header",
            vec![auth(&format!("Bearer {}", "a".repeat(100_000)))],
            Expect(431, "envoy_header_limit"),
        ),
    ]);
    cases
}

/// The last base64url character with its unused low bits set: the same bytes, written non-canonically.
fn non_canonical_tail(b64: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let (head, last) = b64.split_at(b64.len() - 1);
    let i = ALPHABET.iter().position(|c| *c == last.as_bytes()[0]).unwrap();
    format!("{head}{}", ALPHABET[i | 1] as char)
}

/// `"act":` followed by `depth` nested objects, the most compact deep chain there is.
fn nested_act(depth: usize) -> String {
    format!(r#""act":{}null{}"#, r#"{"act":"#.repeat(depth), "}".repeat(depth))
}

/// Status and reason of a sidecar reply: the filter's JSON, its JSON-RPC refusal for MCP, or a
/// reply Envoy itself made before any filter ran.
fn filter_outcome(r: &Reply) -> String {
    let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    let reason = v["reason"].as_str().or(v["error"]["data"]["reason"].as_str());
    match (r.status, reason) {
        // The app answered: whatever happened further down the chain, this sidecar let it in.
        (_, _) if v["agent"].is_string() => ACCEPTED.show(),
        (431, None) => "431 envoy_header_limit".to_string(),
        (s, Some(reason)) => {
            // RFC 6750: every 401 carries the challenge, with the error code when a token was sent.
            if s == 401 && !r.www_authenticate.as_deref().is_some_and(|c| c.starts_with("Bearer")) {
                return format!("{s} {reason} without WWW-Authenticate");
            }
            format!("{s} {reason}")
        }
        (s, None) => format!("{s} {}", r.body.chars().take(60).collect::<String>()),
    }
}

fn sts_outcome(r: &Reply) -> String {
    let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    match (r.status, v["actorchain_reason"].as_str()) {
        (200, _) if v["access_token"].is_string() => GRANTED.show(),
        (s, Some(reason)) if v["error"].is_string() => format!("{s} {reason}"),
        (s, _) => format!("{s} {}", r.body.chars().take(60).collect::<String>()),
    }
}

async fn at_filter(demo: &Demo, values: &[Vec<u8>]) -> String {
    let mut conn = demo.ingress("investigation", "oncall").await.unwrap();
    let mut headers: Vec<(&str, &[u8])> = values.iter().map(|v| ("authorization", v.as_slice())).collect();
    headers.push(("content-type", b"application/json"));
    let body = tools_call("create_pr").to_string().into_bytes();
    match conn.request_raw("POST", "/investigate", &headers, body).await {
        Ok(r) => filter_outcome(&r),
        Err(e) => format!("no reply: {e}"),
    }
}

async fn at_sts(conn: &mut Connection, params: &[(&str, &str)]) -> String {
    sts_outcome(&conn.post_form("/token", params).await.unwrap())
}

fn exchange_params(subject: &str) -> Vec<(&str, &str)> {
    vec![
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", subject),
        ("subject_token_type", TT_JWT),
        ("audience", "mcp-gateway"),
        ("client_id", "investigation-agent"),
    ]
}

/// Counts connections to a port an attacker would own; nothing may ever connect.
fn canary() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for _ in l.incoming() {
            h.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, hits)
}

fn row(id: &str, attack: &str, target: &'static str, expected: String, observed: String) -> Row {
    Row { id: id.to_string(), attack: attack.to_string(), target, expected, observed }
}

async fn token_rows(demo: &Demo, f: &Forge, canary_port: u16) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut sts = demo.sts_connection(Some("investigation")).await.unwrap();
    for case in token_cases(f, canary_port) {
        if let Some(e) = case.filter {
            rows.push(row(case.id, &case.attack, "filter", e.show(), at_filter(demo, &case.authorization).await));
        }
        if let (Some(e), Some(subject)) = (case.sts, &case.subject) {
            rows.push(row(case.id, &case.attack, "STS", e.show(), at_sts(&mut sts, &exchange_params(subject)).await));
        }
    }
    rows
}

/// An ES256 token, and the same with each kind of broken ECDSA signature (the last is signed
/// correctly but claims EdDSA). Every case but the first must be refused.
fn ecdsa_cases(f: &Forge, header: &Value, claims: &Value, key: &actorchain_token::PrivateKey) -> Vec<(&'static str, &'static str, String)> {
    let good = f.sign_text(&header.to_string(), &claims.to_string(), key);
    let sig = B64.decode(good.rsplit_once('.').unwrap().1).unwrap();
    let (r, s) = sig.split_at(32);
    let with_sig = |sig: Vec<u8>| f.with_signature(header, claims, &sig);
    vec![
        ("ecdsa-baseline", "a valid ES256 token (control)", good.clone()),
        ("ecdsa-r-zero", "ECDSA r = 0", with_sig([&[0; 32][..], s].concat())),
        ("ecdsa-s-zero", "ECDSA s = 0", with_sig([r, &[0; 32][..]].concat())),
        ("ecdsa-zero", "ECDSA r = s = 0", with_sig(vec![0; 64])),
        ("ecdsa-r-n", "ECDSA r = n", with_sig([&P256_N[..], s].concat())),
        ("ecdsa-s-n", "ECDSA s = n", with_sig([r, &P256_N[..]].concat())),
        ("ecdsa-s-max", "ECDSA s = 2^256 - 1", with_sig([r, &[0xff; 32][..]].concat())),
        ("ecdsa-der", "ECDSA signature in DER", with_sig(der_signature(&sig))),
        ("ecdsa-short", "ECDSA signature 63 bytes", with_sig(sig[..63].to_vec())),
        (
            "ecdsa-alg-ed",
            "`alg: EdDSA` naming the ES256 key",
            f.sign_text(&with(header.clone(), "alg", json!("EdDSA")).to_string(), &claims.to_string(), key),
        ),
    ]
}

fn ecdsa_expect(id: &str, status: u16, accepted: Expect) -> Expect {
    match id {
        "ecdsa-baseline" => accepted,
        "ecdsa-alg-ed" => Expect(status, "alg_key_mismatch"),
        _ => Expect(status, "signature_invalid"),
    }
}

/// At the STS, as JWT-SVID actor tokens (SPIRE's ES256), with no client certificate so the
/// JWT-SVID is the only proof of the workload.
async fn ecdsa_sts_rows(demo: &Demo, f: &Forge) -> Vec<Row> {
    let subject = f.sign(&f.header(), &f.claims("hostile-ecdsa"));
    let header = json!({"alg": "ES256", "kid": f.svid_kid, "typ": "JWT"});
    let mut conn = demo.sts_connection(None).await.unwrap();
    let mut rows = Vec::new();
    for (id, attack, actor) in ecdsa_cases(f, &header, &f.svid_claims("investigation"), &f.svid_key) {
        let mut params = exchange_params(&subject);
        params.extend([("actor_token", actor.as_str()), ("actor_token_type", TT_JWT)]);
        let observed = at_sts(&mut conn, &params).await;
        rows.push(row(id, &format!("{attack}, as JWT-SVID"), "STS", ecdsa_expect(id, 400, GRANTED).show(), observed));
    }
    rows
}

/// At the filter, against an STS that signs with ES256.
async fn ecdsa_filter_rows(root: &std::path::Path) -> Vec<Row> {
    let work = tempfile::tempdir().unwrap();
    let tuning = Tuning { sts_alg: Some("ES256"), ..Tuning::default() };
    let demo = Demo::start_tuned(Paths::workspace(root, "debug", work.path().to_path_buf()), tuning).await.expect("ES256 topology starts");
    let f = Forge::read(&demo.dev, actorchain_sts::server::unix_now()).unwrap();
    let mut rows = Vec::new();
    for (id, attack, token) in ecdsa_cases(&f, &f.header(), &f.claims("hostile-ecdsa"), &f.sts_key) {
        let observed = at_filter(&demo, &[format!("Bearer {token}").into_bytes()]).await;
        rows.push(row(id, &format!("{attack}, from an ES256 STS"), "filter", ecdsa_expect(id, 401, ACCEPTED).show(), observed));
    }
    rows
}

/// One raw request to `/token`.
struct TokenRequest {
    id: &'static str,
    attack: &'static str,
    method: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    expect: Expect,
}

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

fn form_post(id: &'static str, attack: &'static str, body: Vec<u8>, expect: Expect) -> TokenRequest {
    TokenRequest { id, attack, method: "POST", content_type: FORM, body, expect }
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish().into_bytes()
}

/// Malformed `/token` requests, each from an authenticated workload.
async fn request_rows(demo: &Demo, f: &Forge) -> Vec<Row> {
    let subject = f.sign(&f.header(), &f.claims("hostile-requests"));
    let base = exchange_params(&subject);
    let minus = |name: &str| base.iter().filter(|(k, _)| *k != name).cloned().collect::<Vec<_>>();
    let replaced = |name: &str, value: &str| form(&[&minus(name)[..], &[(name, value)]].concat());
    let plus = |extra: &[(&str, &str)]| form(&[&base[..], extra].concat());
    let padding = "p".repeat(40_000);
    let mut non_utf8 = form(&minus("subject_token"));
    non_utf8.extend_from_slice(b"&subject_token=%FF%FE");
    non_utf8.extend_from_slice(subject.as_bytes());
    let cases = [
        form_post("grant-missing", "no `grant_type`", form(&minus("grant_type")), Expect(400, "grant_type_missing")),
        form_post("grant-password", "`grant_type=password`", replaced("grant_type", "password"), Expect(400, "grant_type_unsupported")),
        form_post("param-repeated", "`subject_token` twice", plus(&[("subject_token", "x.y.z")]), Expect(400, "parameter_repeated")),
        form_post("grant-repeated", "`grant_type` twice", plus(&[("grant_type", "client_credentials")]), Expect(400, "parameter_repeated")),
        form_post(
            "actor-without-type",
            "`actor_token` without `actor_token_type`",
            plus(&[("actor_token", "a.b.c")]),
            Expect(400, "actor_token_type_missing"),
        ),
        form_post(
            "actor-type-alone",
            "`actor_token_type` without `actor_token`",
            plus(&[("actor_token_type", TT_JWT)]),
            Expect(400, "actor_token_type_without_token"),
        ),
        form_post("subject-missing", "no `subject_token`", form(&minus("subject_token")), Expect(400, "subject_token_missing")),
        form_post(
            "subject-type-missing",
            "no `subject_token_type`",
            form(&minus("subject_token_type")),
            Expect(400, "subject_token_type_missing"),
        ),
        form_post(
            "subject-type-saml",
            "`subject_token_type` SAML",
            // A token type the contract does not take (SAML 2.0, RFC 8693 §3).
            replaced("subject_token_type", &TT_JWT.replace(":jwt", ":saml2")),
            Expect(400, "subject_token_type_unsupported"),
        ),
        form_post("audience-two", "two audiences", plus(&[("audience", "oncall-agent")]), Expect(400, "audience_not_single")),
        form_post("audience-missing", "no `audience`", form(&minus("audience")), Expect(400, "audience_missing")),
        form_post("client-id-missing", "no `client_id`", form(&minus("client_id")), Expect(400, "client_id_missing")),
        form_post(
            "scope-widening",
            "`scope` wider than the subject token's",
            plus(&[("scope", "repo:admin")]),
            Expect(400, "scope_widening"),
        ),
        form_post("body-40k", "40 KB body", plus(&[("padding", padding.as_str())]), Expect(413, "body_too_large")),
        form_post("non-utf8-subject", "subject token with bytes that are not UTF-8", non_utf8, Expect(400, "token_bad_base64")),
        TokenRequest {
            id: "json-body",
            attack: "JSON instead of a form",
            method: "POST",
            content_type: Some("application/json"),
            body: json!({"grant_type": TOKEN_EXCHANGE}).to_string().into_bytes(),
            expect: Expect(415, "content_type_unsupported"),
        },
        TokenRequest {
            id: "get",
            attack: "GET /token",
            method: "GET",
            content_type: None,
            body: Vec::new(),
            expect: Expect(405, "method_not_allowed"),
        },
    ];
    let mut conn = demo.sts_connection(Some("investigation")).await.unwrap();
    let mut rows = Vec::new();
    for c in cases {
        let observed = sts_outcome(&conn.send(c.method, "/token", c.content_type, c.body).await.unwrap());
        rows.push(row(c.id, c.attack, "STS", c.expect.show(), observed));
    }
    rows
}

/// Privileges held only by a prior actor grant nothing: the on-call agent presents a token whose
/// nested `act` names the investigation agent, which the MCP rule wants as the current actor.
async fn nested_act_row(demo: &Demo, f: &Forge) -> Row {
    let mut c = f.claims("hostile-nested");
    c["aud"] = json!("mcp-gateway");
    c["act"]["act"] = json!({"sub": "investigation-agent", "spiffe_id": actorchain_sts::dev::workload_id("investigation")});
    let auth = format!("Bearer {}", f.sign(&f.header(), &c));
    let mut conn = demo.ingress("mcp-server", "oncall").await.unwrap();
    let h = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let r = conn.request("POST", "/mcp", &h, tools_call("create_pr").to_string().into_bytes()).await.unwrap();
    row(
        "act-nested-privilege",
        "the allowed actor only in a nested `act`",
        "filter",
        Expect(403, "actor_not_allowed").show(),
        filter_outcome(&r),
    )
}

/// A revoked session's tokens are refused by the STS and, once the feed arrives, by the filter.
async fn revocation_rows(demo: &Demo, f: &Forge) -> Vec<Row> {
    let token = f.sign(&f.header(), &f.claims("hostile-revoked"));
    let auth = vec![format!("Bearer {token}").into_bytes()];
    assert_eq!(at_filter(demo, &auth).await, ACCEPTED.show(), "the token works before it is revoked");
    demo.revoke("session", "hostile-revoked").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut observed = at_filter(demo, &auth).await;
    while observed == ACCEPTED.show() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        observed = at_filter(demo, &auth).await;
    }
    let mut sts = demo.sts_connection(Some("investigation")).await.unwrap();
    let attack = "replay after the session was revoked";
    vec![
        row("revoked-session", attack, "filter", Expect(401, "session_revoked").show(), observed),
        row("revoked-session", attack, "STS", Expect(400, "session_revoked").show(), at_sts(&mut sts, &exchange_params(&token)).await),
    ]
}

/// What a caller chooses besides the token — a correlation key, headers an app framework would
/// read as identity, a finished request's key — never decides whose identity travels on.
async fn borrowing_rows(demo: &Demo, f: &Forge) -> Vec<Row> {
    let auth = format!("Bearer {}", f.sign(&f.header(), &f.claims("hostile-borrow")));
    let forged = "actorchain=0123456789abcdef0123456789abcdef";
    let h = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("tracestate", forged),
        ("x_actorchain_sub", "admin"),
        ("X-Actorchain_Chain", "root-agent"),
    ];
    let mut conn = demo.ingress("investigation", "oncall").await.unwrap();
    let r = conn.request("POST", "/investigate", &h, tools_call("create_pr").to_string().into_bytes()).await.unwrap();
    let received = serde_json::from_str::<Value>(&r.body).unwrap_or_default()["received"].clone();
    let state = received["tracestate"].as_str().unwrap_or("none").to_string();
    let key_seen = if state.contains(forged) { "the caller's key reached the app" } else { "a key the sidecar minted" };
    let lookalikes: Vec<&String> =
        received.as_object().into_iter().flatten().map(|(k, _)| k).filter(|k| k.contains('_') || k.contains("Actorchain")).collect();
    let spoofed = if lookalikes.is_empty() { "none reached the app".to_string() } else { format!("reached the app: {lookalikes:?}") };
    // A finished request's key, replayed by the app with no token: its record is gone.
    let h = [("tracestate", state.as_str()), ("content-type", "application/json")];
    let (status, body) = demo.call_egress("investigation", "mcp-gateway", "/mcp", &h, tools_call("create_pr")).await.unwrap();
    vec![
        row(
            "tracestate-forged",
            "a caller's own `tracestate` member `actorchain=<key>`",
            "filter",
            "a key the sidecar minted".into(),
            key_seen.into(),
        ),
        row(
            "header-lookalike",
            "`x_actorchain_sub`, `X-Actorchain_Chain` (read as identity by CGI/WSGI-style apps)",
            "filter",
            "none reached the app".into(),
            spoofed,
        ),
        row(
            "key-replayed",
            "the app replays a finished request's correlation key, no token (egress)",
            "filter",
            Expect(403, "no_subject_token").show(),
            format!("{status} {}", body["reason"].as_str().unwrap_or("?")),
        ),
    ]
}

/// Tokens naming kids nobody has make the filter refetch the JWKS at most once per
/// `jwks_min_refetch_seconds` (10 s), not once per token.
async fn kid_storm_row(demo: &Demo, f: &Forge) -> Row {
    let w = demo.workload("investigation").unwrap().clone();
    let fetches = || async { demo.counter(&w, "actorchain.jwks.fetch").await };
    let before = fetches().await;
    assert!(before >= 1, "the JWKS fetch counters exist and counted the first fetch");
    for i in 0..40 {
        let token = f.sign(&with(f.header(), "kid", json!(format!("unknown-{i}"))), &f.claims("hostile-storm"));
        at_filter(demo, &[format!("Bearer {token}").into_bytes()]).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n = fetches().await - before;
    let observed = if n <= 1 { "at most 1 JWKS fetch".to_string() } else { format!("{n} JWKS fetches") };
    row("kid-storm", "40 tokens with 40 unknown kids in a burst", "filter", "at most 1 JWKS fetch".into(), observed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_is_refused_for_the_named_reason() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let demo = Demo::start(Paths::workspace(&root, "debug", work.path().to_path_buf())).await.expect("demo topology starts");
    let f = Forge::read(&demo.dev, actorchain_sts::server::unix_now()).unwrap();
    let (canary_port, canary_hits) = canary();

    let mut rows = token_rows(&demo, &f, canary_port).await;
    rows.extend(ecdsa_sts_rows(&demo, &f).await);
    rows.extend(ecdsa_filter_rows(&root).await);
    rows.extend(request_rows(&demo, &f).await);
    rows.push(nested_act_row(&demo, &f).await);
    rows.extend(revocation_rows(&demo, &f).await);
    rows.extend(borrowing_rows(&demo, &f).await);
    rows.push(kid_storm_row(&demo, &f).await);
    let hits = canary_hits.load(Ordering::SeqCst);
    rows.push(row(
        "no-fetch",
        "`jku`/`x5u` URLs above: connections the attacker's server received",
        "both",
        "0 connections".into(),
        format!("{hits} connections"),
    ));

    let failed: Vec<String> = rows
        .iter()
        .filter(|r| !r.passed())
        .map(|r| format!("{} @{}: expected {}, observed {}", r.id, r.target, r.expected, r.observed))
        .collect();
    assert!(failed.is_empty(), "{} of {} cases did not go as expected:\n{}", failed.len(), rows.len(), failed.join("\n"));
    let doc = hostile::render(
        "Hardening: attacks",
        "Written by `tests/attacks.rs` from what real Envoy (with the actorchain filter) and the real STS answered; \
         the test fails when an outcome or this file differs. Filter: the investigation agent's sidecar, token presented \
         over mTLS by the workload it names. STS: `/token` with the token as `subject_token`, from the investigation workload.",
        &rows,
    );
    hostile::check_doc(&root.join("docs/hardening-attacks.md"), &doc).unwrap();
}

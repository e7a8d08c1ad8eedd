//! Hostile tokens, each sent to the filter and, as `subject_token`, to the STS.

use super::*;

pub(crate) fn token_cases(f: &Forge, canary: u16) -> Vec<Case> {
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
pub(crate) fn non_canonical_tail(b64: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let (head, last) = b64.split_at(b64.len() - 1);
    let i = ALPHABET.iter().position(|c| *c == last.as_bytes()[0]).unwrap();
    format!("{head}{}", ALPHABET[i | 1] as char)
}

/// `"act":` followed by `depth` nested objects, the most compact deep chain there is.
pub(crate) fn nested_act(depth: usize) -> String {
    format!(r#""act":{}null{}"#, r#"{"act":"#.repeat(depth), "}".repeat(depth))
}

pub(crate) async fn token_rows(demo: &Demo, f: &Forge, canary_port: u16) -> Vec<Row> {
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

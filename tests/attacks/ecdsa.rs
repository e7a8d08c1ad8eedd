//! ECDSA signature attacks: at the STS through JWT-SVIDs, at the filter against an STS signing ES256.

use super::*;

/// An ES256 token, and the same with each kind of broken ECDSA signature (the last is signed
/// correctly but claims EdDSA). Every case but the first must be refused.
pub(crate) fn ecdsa_cases(
    f: &Forge,
    header: &Value,
    claims: &Value,
    key: &actorchain_token::PrivateKey,
) -> Vec<(&'static str, &'static str, String)> {
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

pub(crate) fn ecdsa_expect(id: &str, status: u16, accepted: Expect) -> Expect {
    match id {
        "ecdsa-baseline" => accepted,
        "ecdsa-alg-ed" => Expect(status, "alg_key_mismatch"),
        _ => Expect(status, "signature_invalid"),
    }
}

/// At the STS, as JWT-SVID actor tokens (SPIRE's ES256), with no client certificate so the
/// JWT-SVID is the only proof of the workload.
pub(crate) async fn ecdsa_sts_rows(demo: &Demo, f: &Forge) -> Vec<Row> {
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
pub(crate) async fn ecdsa_filter_rows(root: &std::path::Path) -> Vec<Row> {
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

//! Malformed `/token` requests, at the STS.

use super::*;

/// One raw request to `/token`.
pub(crate) struct TokenRequest {
    id: &'static str,
    attack: &'static str,
    method: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    expect: Expect,
}

pub(crate) const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

pub(crate) fn form_post(id: &'static str, attack: &'static str, body: Vec<u8>, expect: Expect) -> TokenRequest {
    TokenRequest { id, attack, method: "POST", content_type: FORM, body, expect }
}

pub(crate) fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish().into_bytes()
}

/// Malformed `/token` requests, each from an authenticated workload.
pub(crate) async fn request_rows(demo: &Demo, f: &Forge) -> Vec<Row> {
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

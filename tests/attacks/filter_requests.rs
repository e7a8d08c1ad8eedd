//! Requests at the filter beyond the token itself: nested privileges, revocation, what a caller
//! chooses besides the token, and a storm of unknown kids.

use super::*;

/// Privileges held only by a prior actor grant nothing: the on-call agent presents a token whose
/// nested `act` names the investigation agent, which the MCP rule wants as the current actor.
pub(crate) async fn nested_act_row(demo: &Demo, f: &Forge) -> Row {
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
pub(crate) async fn revocation_rows(demo: &Demo, f: &Forge) -> Vec<Row> {
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
pub(crate) async fn borrowing_rows(demo: &Demo, f: &Forge) -> Vec<Row> {
    let auth = format!("Bearer {}", f.sign(&f.header(), &f.claims("hostile-borrow")));
    let post = |extra: Vec<(&'static str, &'static str)>| {
        let auth = auth.clone();
        async move {
            let mut h = vec![("authorization", auth.as_str()), ("content-type", "application/json")];
            h.extend(extra);
            let mut conn = demo.ingress("investigation", "oncall").await.unwrap();
            let r = conn.request("POST", "/investigate", &h, tools_call("create_pr").to_string().into_bytes()).await.unwrap();
            let body = serde_json::from_str::<Value>(&r.body).unwrap_or_default();
            (r.status, body)
        }
    };
    // A caller's own key, in either carrier (with a trace, so Envoy's tracer would pass it on).
    let mut forged_rows = Vec::new();
    for (header, id) in [("tracestate", "tracestate-forged"), ("baggage", "baggage-forged")] {
        let extra = vec![("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), (header, FORGED_KEY)];
        let (status, body) = post(extra).await;
        let attack = format!("a caller's own `{header}` member `actorchain=<key>`");
        let observed = format!("{status} {}", body["reason"].as_str().unwrap_or("?"));
        forged_rows.push(row(id, &attack, "filter", Expect(400, "correlation_forged").show(), observed));
    }
    let (_, body) = post(vec![("x_actorchain_sub", "admin"), ("X-Actorchain_Chain", "root-agent")]).await;
    let received = body["received"].clone();
    assert!(received.is_object(), "the app answered: {body}");
    let lookalikes: Vec<&String> =
        received.as_object().into_iter().flatten().map(|(k, _)| k).filter(|k| k.contains('_') || k.contains("Actorchain")).collect();
    let spoofed = if lookalikes.is_empty() { "none reached the app".to_string() } else { format!("reached the app: {lookalikes:?}") };
    // A finished request's key, replayed by the app with no token: its record is gone.
    let state = received["tracestate"].as_str().unwrap_or_default().to_string();
    assert!(state.starts_with("actorchain="), "the app got a key: {received}");
    let h = [("tracestate", state.as_str()), ("content-type", "application/json")];
    let (status, body) = demo.call_egress("investigation", "mcp-gateway", "/mcp", &h, tools_call("create_pr")).await.unwrap();
    forged_rows.extend([
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
    ]);
    forged_rows
}

/// A correlation key a caller made up.
const FORGED_KEY: &str = "actorchain=0123456789abcdef0123456789abcdef";

/// Tokens naming kids nobody has make the filter refetch the JWKS at most once per
/// `jwks_min_refetch_seconds` (10 s), not once per token.
pub(crate) async fn kid_storm_row(demo: &Demo, f: &Forge) -> Row {
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

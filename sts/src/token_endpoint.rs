//! The token endpoint's work, start to finish: parse, authenticate, decide, sign, record in the
//! ledger, audit. Nothing is answered before the decision is durable.

use std::time::{Instant, SystemTime};

use actorchain_token::wire::ExchangeResponse;
use actorchain_token::{sign_compact, TimeWindow, TYP_ACCESS_TOKEN};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;

use crate::app::Peer;
use crate::error::{ExchangeError, OAuthCode};
use crate::exchange::{authenticate, decide, AuditRecord, Verifiers};
use crate::form::parse_token_request;
use crate::state::Sts;
use crate::sync::ReadWrite;

impl Sts {
    /// One exchange, start to finish: parse, authenticate, decide, sign, record in the ledger,
    /// audit. Returns the HTTP status and JSON body; nothing is answered before the decision is
    /// durable. `traceparent` (the caller's W3C trace context) parents the exchange's span. Used
    /// by the HTTP handler and by in-process benchmarks.
    pub async fn exchange(&self, body: &[u8], peer: &Peer, traceparent: Option<&str>, now: u64) -> (u16, String) {
        let started = Instant::now();
        let started_at = SystemTime::now();
        let mut rec = AuditRecord { ts: now, ..Default::default() };
        let outcome = self.exchange_inner(body, peer, now, &mut rec);
        let (mut status, mut body, mut reason) = match outcome {
            Ok(body) => (200, body, "granted"),
            Err(e) => (e.status(), e.body(), e.reason),
        };
        rec.decision = if status == 200 { "granted" } else { "refused" };
        rec.reason = reason;
        if let Err(why) = self.ledger.record(rec.clone()).await {
            // A grant that cannot be recorded is not handed out.
            let e = ExchangeError::new(OAuthCode::ServerError, "ledger_unavailable", "the decision could not be recorded; try again");
            self.audit.emit("ledger", &serde_json::json!({ "ts": now, "error": why }));
            (status, body, reason) = (e.status(), e.body(), e.reason);
            rec.decision = "refused";
            rec.reason = reason;
        }
        self.audit.emit("decision", &rec);
        self.metrics.decision(rec.decision, reason, started.elapsed());
        self.telemetry.exchange(traceparent, started_at, &rec);
        (status, body)
    }

    fn exchange_inner(&self, body: &[u8], peer: &Peer, now: u64, rec: &mut AuditRecord) -> Result<String, ExchangeError> {
        let req = parse_token_request(body)?;
        rec.client_id = Some(req.client_id.clone());
        let svid = self.svid.reading().clone();
        let peer_id = match peer {
            Peer::Anonymous => None,
            Peer::Workload(id) => Some(id.as_str()),
            Peer::Invalid(why) => return Err(ExchangeError::new(OAuthCode::InvalidClient, "workload_svid_invalid", why.clone())),
        };
        let workload = authenticate(peer_id, req.actor_token.as_deref(), &svid, now)?;
        let registry = self.registry.reading().clone();
        let people = self.people.reading().clone();
        let keys = self.keys.reading().clone();
        let revoked = self.revocations.set();
        let v = Verifiers {
            issuer: &self.cfg.issuer,
            own_keys: &keys.published,
            people: &people,
            window: TimeWindow { leeway_secs: self.cfg.leeway_seconds },
            max_depth: self.cfg.max_depth,
            revoked: &revoked,
        };
        let grant = decide(&registry, &v, &req, &workload, now, new_jti(), rec)?;
        let (kid, key) = keys
            .ring
            .signing(now)
            .ok_or_else(|| ExchangeError::new(OAuthCode::ServerError, "no_signing_key", "the STS has no key that may sign now"))?;
        let token = sign_compact(&grant.claims, key, kid, Some(TYP_ACCESS_TOKEN));
        let answer = ExchangeResponse {
            access_token: token,
            issued_token_type: req.issued_token_type.to_string(),
            token_type: "Bearer".to_string(),
            expires_in: grant.claims.exp - now,
            scope: grant.claims.scope,
        };
        Ok(actorchain_token::to_json(&answer))
    }
}

fn new_jti() -> String {
    B64.encode(crate::keys::random::<16>())
}

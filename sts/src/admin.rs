//! Admin operations over mTLS with an SVID named in `admin_ids`: revocations (RFC 7009 and by
//! grain) and ledger queries; and the plain admin listener's health, readiness and metrics.

use actorchain_token::{RevocationEntry, RevocationKind, TYP_ACCESS_TOKEN};

use crate::app::Peer;
use crate::error::{ExchangeError, OAuthCode};
use crate::exchange::AuditRecord;
use crate::ledger::{session_tree, Filter};
use crate::revocations::NewRevocation;
use crate::state::Sts;
use crate::sync::{Locked, ReadWrite};

impl Sts {
    pub(crate) fn is_admin(&self, peer: &Peer) -> bool {
        matches!(peer, Peer::Workload(id) if self.cfg.admin_ids.contains(id))
    }

    /// Revokes a token, a session, an agent or a person, on `by`'s word for reason `why`; recorded
    /// in the ledger (who, why, what). Entries stay in the feed until every token they could match
    /// has expired: a token's own `exp`; the longest lifetime the STS mints for a session or an
    /// agent; a week for a person, whose tokens come from an IdP.
    pub async fn revoke(&self, r: Revoke<'_>, now: u64) -> Result<RevocationEntry, String> {
        let kept = match (r.kind, r.token) {
            (RevocationKind::Person, _) => now + PERSON_KEPT_SECS,
            (_, Some(c)) => c.exp,
            _ => now + crate::registry::MAX_TTL_SECS,
        };
        let ask = NewRevocation {
            kind: r.kind,
            value: r.value,
            revoked_at: now,
            expires_at: kept + self.cfg.leeway_seconds,
            lifts: None,
            by: r.by,
            why: r.why,
        };
        let (entry, new) = self.revocations.revoke(&ask)?;
        if new {
            self.metrics.revocation(r.kind.as_str());
            self.record_revocation(&entry, r.token.map(|c| c.sid.as_str()), r.by, r.why).await?;
        }
        Ok(entry)
    }

    /// Lifts revocation `id` on `by`'s word for reason `why`, recorded like it; `None` when there
    /// is no such revocation.
    pub async fn lift(&self, id: u64, by: &str, why: &str, now: u64) -> Result<Option<RevocationEntry>, String> {
        let Some((entry, new)) = self.revocations.lift(id, now, by, why)? else { return Ok(None) };
        if new {
            self.record_revocation(&entry, None, by, why).await?;
        }
        Ok(Some(entry))
    }

    /// The revocation (or lift) in the ledger and the audit log. The revocation is in force
    /// already: one that cannot be recorded is still enforced, and the caller is told.
    async fn record_revocation(&self, e: &RevocationEntry, sid: Option<&str>, by: &str, why: &str) -> Result<(), String> {
        let mut rec = AuditRecord {
            ts: e.revoked_at,
            decision: if e.lifts.is_some() { "lifted" } else { "revoked" },
            reason: e.kind.reason(),
            revoked: Some(e.value.clone()),
            revocation: Some(e.lifts.unwrap_or(e.id)),
            by: Some(by.to_string()),
            why: Some(why.to_string()),
            sid: sid.map(String::from),
            ..Default::default()
        };
        match e.kind {
            RevocationKind::Session => rec.sid = Some(e.value.clone()),
            RevocationKind::Agent => rec.chain = vec![e.value.clone()],
            RevocationKind::Person => {
                if let Some((iss, sub)) = e.value.rsplit_once(' ') {
                    (rec.sub_iss, rec.sub) = (Some(iss.to_string()), Some(sub.to_string()));
                }
            }
            RevocationKind::Token => {}
        }
        self.audit.emit("revocation", &rec);
        self.ledger.record(rec).await.map_err(|e| format!("in force, but not recorded in the ledger: {e}"))
    }

    /// RFC 7009: revokes one of this STS's tokens, for the workload it was issued to (its current
    /// actor's) or an admin. Anything that is not one of ours (unknown, garbled, foreign) is
    /// answered as revoked, so the endpoint is no oracle for tokens it did not issue.
    pub(crate) async fn revoke_token(&self, body: &[u8], peer: &Peer, now: u64) -> Result<(), ExchangeError> {
        let param = |name: &str| form_urlencoded::parse(body).find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
        let Some(token) = param("token") else { return Ok(()) };
        let keys = self.keys.reading().clone();
        let Ok(u) = actorchain_token::Unverified::parse(&token, actorchain_token::TypRule::Exactly(TYP_ACCESS_TOKEN)) else {
            return Ok(());
        };
        let Ok(claims) = u.claims::<actorchain_token::Claims>() else { return Ok(()) };
        if claims.iss != self.cfg.issuer || u.verify_signature(&keys.published).is_err() {
            return Ok(());
        }
        let by = match peer {
            Peer::Workload(id) if self.is_admin(peer) || *id == claims.act.spiffe_id => id.as_str(),
            Peer::Workload(_) => {
                return Err(ExchangeError::new(
                    OAuthCode::UnauthorizedClient,
                    "token_not_held",
                    "only the workload a token was issued to, or an admin, may revoke it",
                ))
            }
            _ => return Err(ExchangeError::new(OAuthCode::InvalidClient, "workload_unauthenticated", "present a workload SVID")),
        };
        let holder = if self.is_admin(peer) { "revoked by an admin (RFC 7009)" } else { "revoked by its holder (RFC 7009)" };
        let why = param("reason").filter(|w| valid_reason(w)).unwrap_or_else(|| holder.to_string());
        let r = Revoke { kind: RevocationKind::Token, value: &claims.jti, token: Some(&claims), by, why: &why };
        self.revoke(r, now).await.map(|_| ()).map_err(unavailable)
    }

    /// `POST /admin/revocations`: `{"kind": ..., "value": ..., "reason": ...}`, and for a person
    /// the issuer that vouches for them (two IdPs' `user1` are two people).
    pub(crate) async fn revocation_request(&self, body: &[u8], peer: &Peer, now: u64) -> Result<RevocationEntry, ExchangeError> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Ask {
            kind: String,
            value: String,
            issuer: Option<String>,
            reason: Option<String>,
        }
        let bad = |reason, d: &str| ExchangeError::new(OAuthCode::InvalidRequest, reason, d);
        let ask: Ask = serde_json::from_slice(body).map_err(|e| bad("revocation_malformed", &e.to_string()))?;
        let kind = RevocationKind::parse(&ask.kind)
            .ok_or_else(|| bad("revocation_kind_unknown", "kind must be token, session, agent or person"))?;
        if !actorchain_token::is_principal_id(&ask.value) {
            return Err(bad("revocation_value_invalid", "value must be 1-256 printable ASCII characters"));
        }
        let why = ask.reason.filter(|w| valid_reason(w)).ok_or_else(|| bad("revocation_reason_missing", REASON_RULE))?;
        let value = match (kind, ask.issuer) {
            (RevocationKind::Person, Some(iss)) if actorchain_token::is_issuer_id(&iss) => {
                actorchain_token::person_handle(&iss, &ask.value)
            }
            (RevocationKind::Person, _) => {
                return Err(bad("revocation_issuer_missing", "a person is named by issuer and value (the subject)"))
            }
            (_, None) => ask.value,
            (_, Some(_)) => return Err(bad("revocation_issuer_unexpected", "issuer names a person's issuer only")),
        };
        let r = Revoke { kind, value: &value, token: None, by: admin_id(peer), why: &why };
        self.revoke(r, now).await.map_err(unavailable)
    }

    /// `POST /admin/revocations/lift`: `{"id": ..., "reason": ...}`.
    pub(crate) async fn lift_request(&self, body: &[u8], peer: &Peer, now: u64) -> Result<RevocationEntry, ExchangeError> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Ask {
            id: u64,
            reason: Option<String>,
        }
        let bad = |reason, d: &str| ExchangeError::new(OAuthCode::InvalidRequest, reason, d);
        let ask: Ask = serde_json::from_slice(body).map_err(|e| bad("revocation_malformed", &e.to_string()))?;
        let why = ask.reason.filter(|w| valid_reason(w)).ok_or_else(|| bad("revocation_reason_missing", REASON_RULE))?;
        self.lift(ask.id, admin_id(peer), &why, now)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| ExchangeError::new(OAuthCode::NotFound, "revocation_unknown", format!("no revocation {}", ask.id)))
    }

    pub(crate) fn ledger_query(&self, query: &str) -> Result<serde_json::Value, ExchangeError> {
        let bad = |d: String| ExchangeError::new(OAuthCode::InvalidRequest, "ledger_query_invalid", d);
        let mut f = Filter::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "sid" => f.sid = Some(v.into_owned()),
                "sub" => f.sub = Some(v.into_owned()),
                "issuer" => f.issuer = Some(v.into_owned()),
                "agent" => f.agent = Some(v.into_owned()),
                "since" => f.since = Some(v.parse().map_err(|_| bad("since: seconds since the epoch".into()))?),
                "until" => f.until = Some(v.parse().map_err(|_| bad("until: seconds since the epoch".into()))?),
                other => return Err(bad(format!("unknown query parameter {other}"))),
            }
        }
        let rows = crate::ledger::select(&mut **self.ledger_reader.locked(), &f).map_err(unavailable)?;
        let records: Vec<serde_json::Value> = rows.iter().filter_map(|r| serde_json::from_str(&r.body).ok()).collect();
        let mut out = serde_json::json!({ "records": records });
        if f.sid.is_some() {
            out["tree"] = serde_json::Value::String(session_tree(&rows));
        }
        Ok(out)
    }
}

/// What is being revoked, on whose word and why.
#[derive(Debug, Clone, Copy)]
pub struct Revoke<'a> {
    pub kind: RevocationKind,
    pub value: &'a str,
    /// The token itself, for a token revoked by presenting it (its `exp` and session).
    pub token: Option<&'a actorchain_token::Claims>,
    pub by: &'a str,
    pub why: &'a str,
}

/// How long a person's revocation stays in the sidecars' feed: longer than an IdP's tokens live.
pub const PERSON_KEPT_SECS: u64 = 7 * 86_400;

const REASON_RULE: &str = "reason: why, 1-512 printable characters, is required";

/// A reason an operator gives: required, bounded, one line.
fn valid_reason(why: &str) -> bool {
    !why.trim().is_empty() && why.len() <= 512 && !why.chars().any(char::is_control)
}

/// The admin's SPIFFE ID (admin endpoints are only reached with one).
fn admin_id(peer: &Peer) -> &str {
    match peer {
        Peer::Workload(id) => id,
        _ => "",
    }
}

/// The store behind an admin operation failed: 500, the operation did not happen.
fn unavailable(why: String) -> ExchangeError {
    ExchangeError::new(OAuthCode::ServerError, "store_unavailable", why)
}

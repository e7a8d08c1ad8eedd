//! Admin operations over mTLS with an SVID named in `admin_ids`: revocations (RFC 7009 and by
//! grain) and ledger queries; and the plain admin listener's health, readiness and metrics.

use actorchain_token::{RevocationEntry, RevocationKind, TYP_ACCESS_TOKEN};

use crate::app::Peer;
use crate::error::{ExchangeError, OAuthCode};
use crate::ledger::{session_tree, Filter};
use crate::state::Sts;
use crate::sync::{Locked, ReadWrite};

impl Sts {
    pub(crate) fn is_admin(&self, peer: &Peer) -> bool {
        matches!(peer, Peer::Workload(id) if self.cfg.admin_ids.contains(id))
    }

    /// Revokes a token, a session, an agent or a person. Entries stay in the feed until every
    /// token they could match has expired: a token's own `exp`, or the longest lifetime the STS
    /// mints for the others (it refuses new tokens for them from now on).
    pub fn revoke(&self, kind: RevocationKind, value: &str, token_exp: Option<u64>, now: u64) -> Result<RevocationEntry, String> {
        let expires_at = token_exp.unwrap_or(now + crate::registry::MAX_TTL_SECS) + self.cfg.leeway_seconds;
        let entry = self.revocations.revoke(kind, value, now, expires_at)?;
        self.metrics.revocation(kind.as_str());
        self.audit.emit("revocation", &entry);
        Ok(entry)
    }

    /// RFC 7009: revokes one of this STS's tokens. Anything that is not one (unknown, garbled,
    /// foreign) is answered the same way, so the endpoint is no oracle.
    pub(crate) fn revoke_token(&self, body: &[u8], now: u64) -> Result<(), ExchangeError> {
        let Some(token) = form_urlencoded::parse(body).find(|(k, _)| k == "token").map(|(_, v)| v.into_owned()) else {
            return Ok(());
        };
        let keys = self.keys.reading().clone();
        let Ok(u) = actorchain_token::Unverified::parse(&token, actorchain_token::TypRule::Exactly(TYP_ACCESS_TOKEN)) else {
            return Ok(());
        };
        let Ok(claims) = u.claims::<actorchain_token::Claims>() else { return Ok(()) };
        if claims.iss != self.cfg.issuer || u.verify_signature(&keys.published).is_err() {
            return Ok(());
        }
        self.revoke(RevocationKind::Token, &claims.jti, Some(claims.exp), now).map(|_| ()).map_err(unavailable)
    }

    /// `POST /admin/revocations`: `{"kind": ..., "value": ...}`, and for a person the issuer that
    /// vouches for them (two IdPs' `user1` are two people).
    pub(crate) fn revocation_request(&self, body: &[u8], now: u64) -> Result<RevocationEntry, ExchangeError> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Ask {
            kind: String,
            value: String,
            issuer: Option<String>,
        }
        let bad = |reason, d: &str| ExchangeError::new(OAuthCode::InvalidRequest, reason, d);
        let ask: Ask = serde_json::from_slice(body).map_err(|e| bad("revocation_malformed", &e.to_string()))?;
        let kind = RevocationKind::parse(&ask.kind)
            .ok_or_else(|| bad("revocation_kind_unknown", "kind must be token, session, agent or person"))?;
        if !actorchain_token::is_principal_id(&ask.value) {
            return Err(bad("revocation_value_invalid", "value must be 1-256 printable ASCII characters"));
        }
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
        self.revoke(kind, &value, None, now).map_err(unavailable)
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

/// The store behind an admin operation failed: 500, the operation did not happen.
fn unavailable(why: String) -> ExchangeError {
    ExchangeError::new(OAuthCode::ServerError, "store_unavailable", why)
}

use std::fmt;

use actorchain_token::wire::ErrorBody;
use actorchain_token::TokenError;
use serde::Serialize;

/// RFC 6749 §5.2 / RFC 8693 §2.2.2 error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthCode {
    InvalidRequest,
    InvalidClient,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    InvalidTarget,
    ServerError,
    /// The caller is known but may not do this (an admin endpoint without an admin SVID).
    AccessDenied,
    NotFound,
}

impl OAuthCode {
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthCode::InvalidRequest => "invalid_request",
            OAuthCode::InvalidClient => "invalid_client",
            OAuthCode::UnauthorizedClient => "unauthorized_client",
            OAuthCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthCode::InvalidScope => "invalid_scope",
            OAuthCode::InvalidTarget => "invalid_target",
            OAuthCode::ServerError => "server_error",
            OAuthCode::AccessDenied => "access_denied",
            OAuthCode::NotFound => "not_found",
        }
    }
}

/// A refused exchange: the OAuth code, a stable machine-readable reason (also in the audit log
/// and metrics), and a sentence telling the caller what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeError {
    pub code: OAuthCode,
    pub reason: &'static str,
    pub description: String,
    /// Set only where HTTP semantics need something other than the code's status (405, 413, 415).
    pub status_override: Option<u16>,
}

impl ExchangeError {
    pub fn new(code: OAuthCode, reason: &'static str, description: impl Into<String>) -> Self {
        ExchangeError { code, reason, description: description.into(), status_override: None }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status_override = Some(status);
        self
    }

    /// A bad subject or actor token: `invalid_request`, with the token rule that failed.
    pub fn bad_token(which: &str, e: TokenError) -> Self {
        ExchangeError::new(OAuthCode::InvalidRequest, e.reason(), format!("{which}: {e}"))
    }

    pub fn status(&self) -> u16 {
        self.status_override.unwrap_or(match self.code {
            OAuthCode::InvalidClient => 401,
            OAuthCode::AccessDenied => 403,
            OAuthCode::NotFound => 404,
            OAuthCode::ServerError => 500,
            _ => 400,
        })
    }

    /// The RFC 6749 error body. `actorchain_reason` is the extension member carrying the reason.
    pub fn body(&self) -> String {
        let body = ErrorBody {
            error: self.code.as_str().to_string(),
            error_description: self.description.clone(),
            actorchain_reason: self.reason.to_string(),
        };
        actorchain_token::to_json(&body)
    }
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code.as_str(), self.reason, self.description)
    }
}

impl std::error::Error for ExchangeError {}

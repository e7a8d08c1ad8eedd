use crate::TokenError;

/// Latest `exp` accepted: year 2100. Anything beyond is a bug or an attack, never a real token.
const MAX_TIMESTAMP: u64 = 4_102_444_800;

/// The validity window rule, with the clock skew allowed between minter and verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub leeway_secs: u64,
}

impl Default for TimeWindow {
    fn default() -> Self {
        TimeWindow { leeway_secs: 30 }
    }
}

impl TimeWindow {
    /// `exp` is exclusive: a token is expired at `exp + leeway` (RFC 7519 §4.1.4).
    pub fn check(&self, now: u64, nbf: u64, exp: u64, iat: Option<u64>) -> Result<(), TokenError> {
        if exp > MAX_TIMESTAMP || nbf > exp || iat.is_some_and(|i| i > exp) {
            return Err(TokenError::BadTimes);
        }
        if now >= exp.saturating_add(self.leeway_secs) {
            return Err(TokenError::Expired);
        }
        if nbf > now.saturating_add(self.leeway_secs) {
            return Err(TokenError::NotYetValid);
        }
        if iat.is_some_and(|i| i > now.saturating_add(self.leeway_secs)) {
            return Err(TokenError::IssuedInFuture);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_edges() {
        let strict = TimeWindow { leeway_secs: 0 };
        assert!(strict.check(100, 90, 101, Some(90)).is_ok());
        assert_eq!(strict.check(101, 90, 101, Some(90)), Err(TokenError::Expired));
        assert_eq!(strict.check(100, 101, 200, None), Err(TokenError::NotYetValid));
        assert_eq!(strict.check(100, 90, 200, Some(150)), Err(TokenError::IssuedInFuture));
        assert_eq!(strict.check(100, 300, 200, None), Err(TokenError::BadTimes));
        assert_eq!(strict.check(100, 0, u64::MAX, None), Err(TokenError::BadTimes));
        let skew = TimeWindow { leeway_secs: 30 };
        assert!(skew.check(120, 90, 101, None).is_ok());
        assert_eq!(skew.check(131, 90, 101, None), Err(TokenError::Expired));
        assert!(skew.check(100, 125, 200, Some(125)).is_ok());
    }
}

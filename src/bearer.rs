//! RFC 6750 §2.1: the bearer token in the `Authorization` header.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// More than one `Authorization` header, or a token in several places.
    Multiple,
    /// `Bearer` with something that is not a b64token after it.
    Malformed,
}

fn is_b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

/// The bearer token among the request's `Authorization` values. `Ok(None)` when there is none
/// (no header, or another scheme), so the caller answers with a challenge and no error code.
pub fn bearer<'a>(authorization: &[&'a str]) -> Result<Option<&'a str>, BearerError> {
    let value = match authorization {
        [] => return Ok(None),
        [one] => *one,
        _ => return Err(BearerError::Multiple),
    };
    let Some((scheme, rest)) = value.split_once(' ') else {
        return if value.eq_ignore_ascii_case("bearer") { Err(BearerError::Malformed) } else { Ok(None) };
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    if is_b64token(rest) {
        Ok(Some(rest))
    } else {
        Err(BearerError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exactly_one_well_formed_token() {
        assert_eq!(bearer(&["Bearer abc.def.ghi"]), Ok(Some("abc.def.ghi")));
        assert_eq!(bearer(&["bearer abc"]), Ok(Some("abc")));
        assert_eq!(bearer(&[]), Ok(None));
        assert_eq!(bearer(&["Basic dXNlcjpwYXNz"]), Ok(None));
        for bad in ["Bearer", "Bearer ", "Bearer  abc", "Bearer a b", "Bearer a,b", "Bearer ===", "Bearer a\"b"] {
            assert_eq!(bearer(&[bad]), Err(BearerError::Malformed), "{bad:?}");
        }
        assert_eq!(bearer(&["Bearer a", "Bearer b"]), Err(BearerError::Multiple));
    }
}

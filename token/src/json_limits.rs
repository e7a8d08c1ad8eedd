use crate::TokenError;

/// Deepest JSON nesting accepted in a token header or payload. The deepest legitimate structure is
/// the `act` chain (at most `MAX_DEPTH_CEILING` levels) inside the claims object.
pub const MAX_JSON_DEPTH: usize = 20;

/// Refuses JSON nested deeper than `max` before any parser recurses into it, so a 1000-deep `act`
/// costs one linear scan and never a deep recursion.
pub fn check_json_depth(json: &[u8], max: usize) -> Result<(), TokenError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Err(TokenError::JsonTooDeep);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_structural_brackets() {
        assert!(check_json_depth(br#"{"a":"{{{{{{{{{{{{"}"#, 2).is_ok());
        assert!(check_json_depth(br#"{"a":"\"{{{{{{{{"}"#, 2).is_ok());
        assert!(check_json_depth(br#"{"a":{"b":[1]}}"#, 3).is_ok());
        assert_eq!(check_json_depth(br#"{"a":{"b":[1]}}"#, 2), Err(TokenError::JsonTooDeep));
        let deep = "[".repeat(1000);
        assert_eq!(check_json_depth(deep.as_bytes(), MAX_JSON_DEPTH), Err(TokenError::JsonTooDeep));
    }
}

use std::fmt;

use crate::TokenError;

/// Most scope tokens one token may carry; bounds every set operation.
const MAX_SCOPES: usize = 64;
const MAX_SCOPE_LEN: usize = 128;

/// RFC 6749 §3.3 scope-token: 1*( %x21 / %x23-5B / %x5D-7E ).
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_SCOPE_LEN && s.bytes().all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// A set of scopes, kept sorted and without duplicates so set operations are linear merges and
/// the rendered string is canonical.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(Vec<String>);

impl ScopeSet {
    /// Parses the space-separated form. Single spaces only, as RFC 6749 writes it.
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        if s.is_empty() {
            return Ok(ScopeSet::default());
        }
        Self::from_tokens(s.split(' '))
    }

    pub fn from_tokens<'a>(tokens: impl IntoIterator<Item = &'a str>) -> Result<Self, TokenError> {
        let mut v = Vec::new();
        for t in tokens {
            if !is_scope_token(t) || v.len() >= MAX_SCOPES {
                return Err(TokenError::BadScope);
            }
            v.push(t.to_string());
        }
        v.sort_unstable();
        v.dedup();
        Ok(ScopeSet(v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.binary_search_by(|s| s.as_str().cmp(scope)).is_ok()
    }

    pub fn is_subset(&self, of: &ScopeSet) -> bool {
        self.0.iter().all(|s| of.contains(s))
    }

    pub fn intersection(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(self.0.iter().filter(|s| other.contains(s)).cloned().collect())
    }

    /// Scopes of `self` that `of` lacks: what a refused request asked for beyond its right.
    pub fn difference(&self, of: &ScopeSet) -> ScopeSet {
        ScopeSet(self.0.iter().filter(|s| !of.contains(s)).cloned().collect())
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_canonically() {
        let s = ScopeSet::parse("b a b").unwrap();
        assert_eq!(s.to_string(), "a b");
        assert!(ScopeSet::parse("").unwrap().is_empty());
        for bad in ["a  b", " a", "a ", "a\"b", "a\\b", "a\tb", "é"] {
            assert_eq!(ScopeSet::parse(bad), Err(TokenError::BadScope), "{bad:?}");
        }
    }

    #[test]
    fn set_operations() {
        let a = ScopeSet::parse("x y z").unwrap();
        let b = ScopeSet::parse("y z w").unwrap();
        assert_eq!(a.intersection(&b).to_string(), "y z");
        assert_eq!(a.difference(&b).to_string(), "x");
        assert!(ScopeSet::parse("y").unwrap().is_subset(&a));
        assert!(!b.is_subset(&a));
    }
}

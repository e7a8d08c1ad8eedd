use std::fmt;

/// Why a token, key or chain was refused. `reason()` is the stable machine-readable code that
/// reaches callers, logs and metrics; `Display` is the human sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenError {
    Oversized,
    Malformed,
    BadBase64,
    BadJson,
    JsonTooDeep,
    AlgNotAllowed,
    MissingKid,
    BadKid,
    BadTyp,
    UnsupportedCrit,
    EmbeddedKey,
    UnknownKid,
    AlgKeyMismatch,
    BadSignature,
    BadClaims,
    WrongIssuer,
    WrongAudience,
    Expired,
    NotYetValid,
    IssuedInFuture,
    BadTimes,
    ChainMalformed,
    ChainActorMismatch,
    ChainTooDeep,
    BadScope,
    BadKey,
    DuplicateKid,
}

impl TokenError {
    pub fn reason(self) -> &'static str {
        use TokenError::*;
        match self {
            Oversized => "token_oversized",
            Malformed => "token_malformed",
            BadBase64 => "token_bad_base64",
            BadJson => "token_bad_json",
            JsonTooDeep => "token_json_too_deep",
            AlgNotAllowed => "alg_not_allowed",
            MissingKid => "kid_missing",
            BadKid => "kid_invalid",
            BadTyp => "typ_invalid",
            UnsupportedCrit => "crit_unsupported",
            EmbeddedKey => "embedded_key_header",
            UnknownKid => "kid_unknown",
            AlgKeyMismatch => "alg_key_mismatch",
            BadSignature => "signature_invalid",
            BadClaims => "claims_invalid",
            WrongIssuer => "issuer_mismatch",
            WrongAudience => "audience_mismatch",
            Expired => "token_expired",
            NotYetValid => "token_not_yet_valid",
            IssuedInFuture => "token_issued_in_future",
            BadTimes => "token_times_invalid",
            ChainMalformed => "chain_malformed",
            ChainActorMismatch => "chain_actor_mismatch",
            ChainTooDeep => "chain_too_deep",
            BadScope => "scope_invalid",
            BadKey => "key_invalid",
            DuplicateKid => "kid_duplicate",
        }
    }

    fn sentence(self) -> &'static str {
        use TokenError::*;
        match self {
            Oversized => "token exceeds the size limit",
            Malformed => "token is not a three-part JWS compact serialization",
            BadBase64 => "token part is not canonical unpadded base64url",
            BadJson => "token header or payload is not valid JSON of the expected shape",
            JsonTooDeep => "token JSON nests deeper than allowed",
            AlgNotAllowed => "alg is not in the allow-list (EdDSA, ES256)",
            MissingKid => "header has no kid",
            BadKid => "kid is empty, too long or not printable",
            BadTyp => "typ header is not the one required",
            UnsupportedCrit => "header lists crit extensions, none are supported",
            EmbeddedKey => "header embeds or references a key (jwk, jku, x5u, x5c); keys come only from the trusted JWKS",
            UnknownKid => "no trusted key has this kid",
            AlgKeyMismatch => "alg does not match the algorithm of the key with this kid",
            BadSignature => "signature does not verify",
            BadClaims => "claims are missing, duplicated or of the wrong type",
            WrongIssuer => "iss is not the expected issuer",
            WrongAudience => "aud is not this recipient",
            Expired => "token has expired",
            NotYetValid => "token is not valid yet (nbf)",
            IssuedInFuture => "iat is in the future beyond the allowed skew",
            BadTimes => "token times are inconsistent or out of range",
            ChainMalformed => "act chain entry is malformed",
            ChainActorMismatch => "outermost act.sub does not equal client_id",
            ChainTooDeep => "act chain is deeper than allowed",
            BadScope => "scope is not a space-separated list of valid scope tokens",
            BadKey => "key is malformed or not of a supported type",
            DuplicateKid => "key set has two keys with the same kid",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sentence())
    }
}

impl std::error::Error for TokenError {}

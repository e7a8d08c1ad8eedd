//! JSON out of values whose encoding cannot fail: structs and sequences of strings, numbers,
//! booleans and `serde_json::Value`s, and maps with string keys. serde_json fails only on a map
//! key that is not a string or a `Serialize` impl that fails, neither of which these types have,
//! so the one unreachable failure is named here rather than at every caller.

use serde::Serialize;

/// The JSON text of `value`.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    #[allow(clippy::expect_used, reason = "only called on types whose JSON encoding cannot fail (see the module)")]
    serde_json::to_string(value).expect("a value of strings, numbers and string-keyed maps encodes")
}

/// The JSON text of `value`, indented for people (files they may read).
pub fn to_json_pretty<T: Serialize + ?Sized>(value: &T) -> String {
    #[allow(clippy::expect_used, reason = "only called on types whose JSON encoding cannot fail (see the module)")]
    serde_json::to_string_pretty(value).expect("a value of strings, numbers and string-keyed maps encodes")
}

/// The JSON bytes of `value`.
pub fn to_json_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    to_json(value).into_bytes()
}

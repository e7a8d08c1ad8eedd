//! ES256 signatures checked by Envoy's own crypto (BoringSSL) instead of inside the wasm VM, where
//! P-256 arithmetic is slow: the key is chosen and every other rule applied by the token crate as
//! ever; only the signature goes to the host, through Envoy's `verify_signature` foreign function
//! (protobuf `envoy.source.extensions.common.wasm.VerifySignatureArguments`, DER key and
//! signature). A host that cannot answer leaves the check to the filter.

use std::collections::HashMap;

use actorchain_token::{es256_signature_der, PublicKey, SignatureCheck};

use crate::host::Host;

/// The foreign function's name in Envoy.
pub const VERIFY_SIGNATURE: &str = "verify_signature";

/// Checks signatures by the host where it can: `spki` holds the DER key of each P-256 `kid`
/// (made once per key set), so Ed25519 keys never leave the filter.
pub struct HostCheck<'a, H> {
    pub host: &'a H,
    pub spki: &'a HashMap<String, Vec<u8>>,
}

impl<H: Host> SignatureCheck for HostCheck<'_, H> {
    fn check(&self, kid: &str, key: &PublicKey, message: &[u8], signature: &[u8]) -> bool {
        if let (Some(spki), Some(der)) = (self.spki.get(kid), es256_signature_der(signature)) {
            if let Some(verdict) = self.host.verify_es256(spki, message, &der) {
                return verdict;
            }
        }
        key.verify(message, signature)
    }
}

fn varint(out: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes_field(out: &mut Vec<u8>, field: u8, value: &[u8]) {
    out.push(field << 3 | 2);
    varint(out, value.len());
    out.extend_from_slice(value);
}

/// `VerifySignatureArguments { hash_function = 1: "sha256", public_key = 2, signature = 3, text = 4 }`.
pub fn verify_signature_arguments(spki_der: &[u8], message: &[u8], der_signature: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(spki_der.len() + message.len() + der_signature.len() + 24);
    bytes_field(&mut out, 1, b"sha256");
    bytes_field(&mut out, 2, spki_der);
    bytes_field(&mut out, 3, der_signature);
    bytes_field(&mut out, 4, message);
    out
}

/// `VerifySignatureResult { result = 1: bool, error = 2: string }`: whether it verified. Anything
/// that does not decode is a failed verification, never a pass.
pub fn verify_signature_result(bytes: &[u8]) -> bool {
    let mut verified = false;
    let mut i = 0;
    while i < bytes.len() {
        let tag = bytes[i];
        i += 1;
        match tag {
            // result, varint: a single byte for a bool.
            0x08 => match bytes.get(i) {
                Some(v @ (0 | 1)) => {
                    verified = *v == 1;
                    i += 1;
                }
                _ => return false,
            },
            // error, length-delimited (short: the length fits one byte or we refuse).
            0x12 => match bytes.get(i) {
                Some(len) if *len < 0x80 => i += 1 + *len as usize,
                _ => return false,
            },
            _ => return false,
        }
    }
    i == bytes.len() && verified
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_the_protobuf_envoy_reads() {
        let a = verify_signature_arguments(&[1, 2], &[3; 200], &[4]);
        assert_eq!(&a[..8], b"\x0a\x06sha256");
        assert_eq!(&a[8..12], &[0x12, 2, 1, 2]);
        assert_eq!(&a[12..15], &[0x1a, 1, 4]);
        // A 200-byte text: its length is a two-byte varint.
        assert_eq!(&a[15..18], &[0x22, 0xc8, 0x01]);
        assert_eq!(a.len(), 18 + 200);
    }

    #[test]
    fn only_a_clean_true_result_verifies() {
        assert!(verify_signature_result(&[0x08, 1]));
        assert!(verify_signature_result(&[0x08, 1, 0x12, 0]));
        assert!(!verify_signature_result(&[]), "proto3 omits false: nothing is false");
        assert!(!verify_signature_result(&[0x08, 0, 0x12, 3, b'b', b'a', b'd']));
        assert!(!verify_signature_result(&[0x08, 2]));
        assert!(!verify_signature_result(&[0x08, 1, 0x12, 9, b'x']), "a cut error string");
        assert!(!verify_signature_result(&[0x08, 1, 0x18, 1]), "an unknown field");
    }
}

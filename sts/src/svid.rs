//! X.509-SVIDs: loading PEM material, the mTLS server and client configurations, and reading the
//! SPIFFE ID out of a verified peer certificate.

use std::path::Path;
use std::sync::Arc;

use actorchain_token::{is_spiffe_id, spiffe_trust_domain};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use x509_parser::extensions::GeneralName;

#[derive(Debug, thiserror::Error)]
pub enum SvidError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}: {1}")]
    Pem(String, String),
    #[error("TLS configuration: {0}")]
    Tls(String),
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, SvidError> {
    let pem = std::fs::read(path).map_err(|e| SvidError::Io(path.display().to_string(), e))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| SvidError::Pem(path.display().to_string(), e.to_string()))?;
    if certs.is_empty() {
        return Err(SvidError::Pem(path.display().to_string(), "no CERTIFICATE blocks".into()));
    }
    Ok(certs)
}

/// A trust bundle as SPIRE publishes it: PEM certificates, or a SPIFFE bundle (a JWKS whose
/// `x509-svid` keys carry the CA certificates in `x5c`, beside the `jwt-svid` keys).
pub fn load_bundle(path: &Path) -> Result<Vec<CertificateDer<'static>>, SvidError> {
    let text = std::fs::read(path).map_err(|e| SvidError::Io(path.display().to_string(), e))?;
    if !text.trim_ascii_start().starts_with(b"{") {
        return load_certs(path);
    }
    let bad = |why: &str| SvidError::Pem(path.display().to_string(), format!("SPIFFE bundle: {why}"));
    let doc: serde_json::Value = serde_json::from_slice(&text).map_err(|e| bad(&e.to_string()))?;
    let mut certs = Vec::new();
    for key in doc["keys"].as_array().ok_or_else(|| bad("no keys"))? {
        if key["use"].as_str() != Some("x509-svid") {
            continue;
        }
        let der = key["x5c"].get(0).and_then(|c| c.as_str()).ok_or_else(|| bad("an x509-svid key without x5c"))?;
        certs.push(CertificateDer::from(STANDARD.decode(der).map_err(|_| bad("x5c is not base64"))?));
    }
    if certs.is_empty() {
        return Err(bad("no x509-svid keys"));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, SvidError> {
    let pem = std::fs::read(path).map_err(|e| SvidError::Io(path.display().to_string(), e))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| SvidError::Pem(path.display().to_string(), e.to_string()))?
        .ok_or_else(|| SvidError::Pem(path.display().to_string(), "no private key block".into()))
}

pub fn root_store(bundle: &[CertificateDer<'static>]) -> Result<RootCertStore, SvidError> {
    let mut roots = RootCertStore::empty();
    for c in bundle {
        roots.add(c.clone()).map_err(|e| SvidError::Tls(format!("trust bundle: {e}")))?;
    }
    Ok(roots)
}

/// TLS for the token endpoint. A client certificate is optional at the TLS layer so that
/// JWT-SVID callers can connect; when one is sent it must chain to the trust bundle, and the
/// exchange itself refuses callers that authenticated neither way.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    bundle: &[CertificateDer<'static>],
) -> Result<ServerConfig, SvidError> {
    let verifier = WebPkiClientVerifier::builder(Arc::new(root_store(bundle)?))
        .allow_unauthenticated()
        .build()
        .map_err(|e| SvidError::Tls(e.to_string()))?;
    let mut cfg = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| SvidError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// TLS for a client of the STS (tests, load runs, JWKS fetches), with an optional client SVID.
pub fn client_config(
    bundle: &[CertificateDer<'static>],
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig, SvidError> {
    let b = ClientConfig::builder().with_root_certificates(root_store(bundle)?);
    let mut cfg = match identity {
        Some((chain, key)) => b.with_client_auth_cert(chain, key).map_err(|e| SvidError::Tls(e.to_string()))?,
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The SPIFFE ID of an X.509-SVID whose chain the TLS layer has already verified: exactly one
/// URI SAN, a valid SPIFFE ID in `trust_domain`, and not a CA certificate (X.509-SVID spec §4, §5).
pub fn spiffe_id_of(cert: &CertificateDer<'_>, trust_domain: &str) -> Result<String, String> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| format!("unparsable certificate: {e}"))?;
    if x509.basic_constraints().ok().flatten().is_some_and(|bc| bc.value.ca) {
        return Err("a CA certificate is not an SVID".into());
    }
    let san = x509.subject_alternative_name().map_err(|e| format!("bad SAN extension: {e}"))?;
    let uris: Vec<&str> = san
        .map(|s| s.value.general_names.iter().filter_map(|n| if let GeneralName::URI(u) = n { Some(*u) } else { None }).collect())
        .unwrap_or_default();
    match uris.as_slice() {
        [one] if is_spiffe_id(one) && spiffe_trust_domain(one) == Some(trust_domain) => Ok(one.to_string()),
        [one] => Err(format!("URI SAN {one} is not a SPIFFE ID of trust domain {trust_domain}")),
        _ => Err(format!("an X.509-SVID has exactly one URI SAN, this certificate has {}", uris.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spiffe_bundle_holds_the_same_roots_as_the_pem() {
        let dir = tempfile::tempdir().unwrap();
        crate::dev::init(dir.path(), false).unwrap();
        let pem = load_bundle(&dir.path().join("bundle.pem")).unwrap();
        let spiffe = load_bundle(&dir.path().join("bundle.spiffe.json")).unwrap();
        assert_eq!(pem, spiffe);
        // The same file also carries the JWT-SVID keys, and only those count as JWT keys.
        let keys = actorchain_token::KeySet::from_jwks(&std::fs::read(dir.path().join("bundle.spiffe.json")).unwrap()).unwrap();
        assert_eq!(keys.len(), 1);
        let no_roots = dir.path().join("jwt-only.json");
        std::fs::write(&no_roots, r#"{"keys":[{"use":"jwt-svid","kty":"EC"}]}"#).unwrap();
        assert!(load_bundle(&no_roots).unwrap_err().to_string().contains("no x509-svid keys"));
    }
}

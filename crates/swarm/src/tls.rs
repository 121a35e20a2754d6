//! TLS 1.3 where the certificate is the node's identity.
//!
//! Every node presents a self-signed X.509 certificate carrying its Ed25519
//! public key, on both sides of the handshake (mutual TLS). Nothing is
//! trusted from the certificate but that key: the handshake's
//! `CertificateVerify` signature proves the peer holds the matching private
//! key, and the key *is* the peer's [`NodeId`]. A dialer that knows whom it
//! wants puts that `NodeId` in the server name (SNI); the verifier refuses
//! any other key. A dialer that does not (`--peer IP:PORT`) sends
//! [`ANY_NODE`] and learns the id from the handshake.

use std::sync::{Arc, OnceLock};

use p2pfs_proto::NodeId;
use rustls::{
    DigitallySignedStruct, DistinguishedName, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms, verify_tls13_signature},
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime},
    server::danger::{ClientCertVerified, ClientCertVerifier},
};

use crate::{
    error::{SetupError, SwarmError},
    identity::SecretKey,
};

/// The server name sent when the dialer does not know the peer's id.
pub const ANY_NODE: &str = "p2pfs";

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the 32
/// key bytes follow.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

static ED25519_ONLY: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[webpki::ring::ED25519],
    mapping: &[(SignatureScheme::ED25519, &[webpki::ring::ED25519])],
};

/// The node id a certificate carries, if it is an Ed25519 certificate.
pub fn node_id_of(cert: &CertificateDer<'_>) -> Result<NodeId, rustls::Error> {
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    let spki = parsed.subject_public_key_info();
    let spki: &[u8] = spki.as_ref();
    match spki.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
        Some(key) if key.len() == 32 => {
            let mut out = [0u8; 32];
            out.copy_from_slice(key);
            Ok(NodeId::from_bytes(out))
        }
        _ => Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding,
        )),
    }
}

/// The server name that asks for `expected`, or any node.
pub fn server_name(expected: Option<NodeId>) -> String {
    expected.map_or_else(|| ANY_NODE.to_string(), |id| id.to_string())
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The node's certificate and key, as rustls wants them.
fn certified(
    key: &SecretKey,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), SwarmError> {
    let setup = SetupError::Certificate;
    let der = PrivatePkcs8KeyDer::from(key.pkcs8_der());
    let pair =
        rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ED25519).map_err(setup)?;
    let params = rcgen::CertificateParams::new(vec![ANY_NODE.to_string()]).map_err(setup)?;
    let cert = params.self_signed(&pair).map_err(setup)?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(der)))
}

/// TLS for accepting connections with the given ALPNs.
pub fn server_config(key: &SecretKey, alpns: &[&[u8]]) -> Result<rustls::ServerConfig, SwarmError> {
    let (cert, der) = certified(key)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(SetupError::Tls)?
        .with_client_cert_verifier(Arc::new(PeerVerifier::default()))
        .with_single_cert(vec![cert], der)
        .map_err(SetupError::Tls)?;
    cfg.alpn_protocols = alpns.iter().map(|a| a.to_vec()).collect();
    Ok(cfg)
}

/// TLS for dialing with one ALPN.
pub fn client_config(key: &SecretKey, alpn: &[u8]) -> Result<rustls::ClientConfig, SwarmError> {
    let (cert, der) = certified(key)?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(SetupError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerVerifier::default()))
        .with_client_auth_cert(vec![cert], der)
        .map_err(SetupError::Tls)?;
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok(cfg)
}

/// Accepts any single Ed25519 certificate whose key matches the expected
/// node (if one is expected), and checks handshake signatures against it.
#[derive(Debug, Default)]
struct PeerVerifier {
    /// Where a dial records the key of a node that was not the one named
    /// in the server name, to report it.
    impostor: Option<Arc<OnceLock<NodeId>>>,
}

/// A copy of `cfg` for one dial, and where it records the id of a peer
/// that turns out to be another node than the one dialed.
pub(crate) fn with_witness(
    cfg: &rustls::ClientConfig,
) -> (rustls::ClientConfig, Arc<OnceLock<NodeId>>) {
    let seen = Arc::new(OnceLock::new());
    let mut cfg = cfg.clone();
    cfg.dangerous()
        .set_certificate_verifier(Arc::new(PeerVerifier {
            impostor: Some(seen.clone()),
        }));
    (cfg, seen)
}

/// The peer presented a key other than the one dialed.
#[derive(Debug)]
struct WrongNode {
    expected: NodeId,
    actual: NodeId,
}

impl std::fmt::Display for WrongNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "peer is node {}, not {}", self.actual, self.expected)
    }
}

impl std::error::Error for WrongNode {}

/// QUIC runs on TLS 1.3 only.
fn refuse_tls12() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::PeerIncompatible(
        rustls::PeerIncompatible::Tls13RequiredForQuic,
    ))
}

fn check_chain(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<NodeId, rustls::Error> {
    if !intermediates.is_empty() {
        return Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding,
        ));
    }
    node_id_of(end_entity)
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let actual = check_chain(end_entity, intermediates)?;
        if let ServerName::DnsName(name) = server_name
            && let Ok(expected) = name.as_ref().parse::<NodeId>()
            && expected != actual
        {
            if let Some(w) = &self.impostor {
                let _ = w.set(actual);
            }
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(WrongNode {
                    expected,
                    actual,
                }))),
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        refuse_tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &ED25519_ONLY)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ED25519_ONLY.supported_schemes()
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        check_chain(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        refuse_tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &ED25519_ONLY)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ED25519_ONLY.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_carries_the_node_id() {
        let key = SecretKey::generate().unwrap();
        let (cert, _) = certified(&key).unwrap();
        assert_eq!(node_id_of(&cert).unwrap(), key.public());
        assert!(node_id_of(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])).is_err());
    }

    #[test]
    fn server_names_encode_the_expected_node() {
        let id = SecretKey::generate().unwrap().public();
        assert_eq!(server_name(Some(id)).parse::<NodeId>().unwrap(), id);
        assert!(ServerName::try_from(server_name(Some(id))).is_ok());
        assert_eq!(server_name(None), ANY_NODE);
    }
}

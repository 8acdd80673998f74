//! TLS to another host's daemon, trusting exactly one certificate: the one whose SHA-256 fingerprint the
//! operator pinned (`[hosts.NAME] fingerprint`). There is no CA and no hostname to check: the daemon's
//! certificate is self-signed, and the pin is the whole of the trust, as with SSH host keys.

use mlxbox_api::remote::fingerprint;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::{Arc, Mutex};

/// reqwest is built with rustls and no default provider: ring is installed as rustls' process default
/// before a client is built (idempotent). The daemon does the same (`mlxbox_core::remote`).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Accepts the server's certificate only when its fingerprint is `want` (None: accepts none, which is how
/// a first contact reads the fingerprint to show). Keeps the fingerprint it saw, for the error.
#[derive(Debug)]
pub struct Pinned {
    want: Option<String>,
    pub seen: Mutex<Option<String>>,
    provider: Arc<CryptoProvider>,
}

impl Pinned {
    pub fn new(want: Option<String>) -> Arc<Pinned> {
        Arc::new(Pinned {
            want,
            seen: Mutex::new(None),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        })
    }

    /// A client TLS configuration that trusts only through this pin.
    pub fn client_config(self: &Arc<Self>) -> Result<rustls::ClientConfig, rustls::Error> {
        Ok(
            rustls::ClientConfig::builder_with_provider(self.provider.clone())
                .with_safe_default_protocol_versions()?
                .dangerous()
                .with_custom_certificate_verifier(self.clone())
                .with_no_client_auth(),
        )
    }

    pub fn want(&self) -> Option<&str> {
        self.want.as_deref()
    }

    pub fn seen(&self) -> Option<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = fingerprint(end_entity);
        *self.seen.lock().unwrap() = Some(got.clone());
        match &self.want {
            Some(w) if *w == got => Ok(ServerCertVerified::assertion()),
            Some(w) => Err(rustls::Error::General(format!(
                "certificate fingerprint {got} is not the pinned {w}"
            ))),
            None => Err(rustls::Error::General(
                "first contact: fingerprint read, not trusted".into(),
            )),
        }
    }

    // The handshake's signatures are still checked: the peer must hold the pinned certificate's key.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

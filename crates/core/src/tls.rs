//! rustls' process-wide crypto provider. reqwest is built with rustls (the remote control client needs
//! TLS) and without a default provider (aws-lc would need cmake), so every process installs ring as the
//! default once, before it builds its first HTTP client. A leaf module: the HTTP clients of `bench`,
//! `services` and `remote` all call it.

/// Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

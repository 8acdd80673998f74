//! The daemon's TLS identity: a self-signed certificate (rcgen) made the first time the remote control
//! API starts, kept as `control-cert.pem` and `control-key.pem` (mode 0600) in the state dir so its
//! fingerprint stays the same across restarts. There is no CA: clients pin the SHA-256 fingerprint, which
//! `mlx-box control info` shows.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("cannot {what} {path}: {source}; check the state directory's permissions")]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a usable {what} ({detail}); remove it and restart the daemon to make a new one (clients must then pin the new fingerprint)")]
    BadPem {
        what: &'static str,
        path: std::path::PathBuf,
        detail: String,
    },
    #[error("cannot make a certificate: {0}")]
    Generate(String),
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

pub const CERT_FILE: &str = "control-cert.pem";
pub const KEY_FILE: &str = "control-key.pem";

pub struct Identity {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
    pub fingerprint: String,
}

impl std::fmt::Debug for Identity {
    // Never print the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

pub fn cert_path(state_dir: &Path) -> PathBuf {
    state_dir.join(CERT_FILE)
}

/// The fingerprint of the certificate in the state dir, if one was made.
pub fn stored_fingerprint(state_dir: &Path) -> Result<Option<String>, RemoteError> {
    let path = cert_path(state_dir);
    if !path.exists() {
        return Ok(None);
    }
    let cert = CertificateDer::from_pem_file(&path).map_err(|e| RemoteError::BadPem {
        what: "certificate",
        path,
        detail: e.to_string(),
    })?;
    Ok(Some(mlxbox_api::remote::fingerprint(&cert)))
}

/// The stored identity, or a new one (written before it is used) when there is none.
pub fn load_or_make(state_dir: &Path) -> Result<Identity, RemoteError> {
    let (cert_path, key_path) = (cert_path(state_dir), state_dir.join(KEY_FILE));
    if !cert_path.exists() || !key_path.exists() {
        make(&cert_path, &key_path)?;
    }
    let bad = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |e: rustls::pki_types::pem::Error| RemoteError::BadPem {
            what,
            path,
            detail: e.to_string(),
        }
    };
    let cert = CertificateDer::from_pem_file(&cert_path).map_err(bad("certificate", &cert_path))?;
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(bad("private key", &key_path))?;
    Ok(Identity {
        fingerprint: mlxbox_api::remote::fingerprint(&cert),
        cert,
        key,
    })
}

fn make(cert_path: &Path, key_path: &Path) -> Result<(), RemoteError> {
    let host = hostname();
    let names = vec!["mlx-box".to_string(), host];
    let ck = rcgen::generate_simple_self_signed(names)
        .map_err(|e| RemoteError::Generate(e.to_string()))?;
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| RemoteError::Io { what, path, source }
    };
    // The key first, private from its first byte; then the certificate.
    write_private(key_path, ck.signing_key.serialize_pem().as_bytes())
        .map_err(io("write", key_path))?;
    crate::config::atomic_write(cert_path, ck.cert.pem().as_bytes())
        .map_err(io("write", cert_path))?;
    tracing::info!(fingerprint = %mlxbox_api::remote::fingerprint(ck.cert.der()), "made the remote control API's certificate");
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The server side of TLS for this identity (TLS 1.2 and 1.3, ring).
pub fn server_config(id: &Identity) -> Result<rustls::ServerConfig, RemoteError> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RemoteError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![id.cert.clone()], id.key.clone_key())
        .map_err(|e| RemoteError::Tls(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_kept_private_and_the_same_after() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(stored_fingerprint(dir.path()).unwrap(), None);
        let a = load_or_make(dir.path()).unwrap();
        let b = load_or_make(dir.path()).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint, "kept across restarts");
        assert_eq!(
            stored_fingerprint(dir.path()).unwrap().as_deref(),
            Some(a.fingerprint.as_str())
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        server_config(&a).unwrap();
        // A damaged certificate is a clear error, not a new identity behind the user's back.
        std::fs::write(cert_path(dir.path()), "junk").unwrap();
        let e = load_or_make(dir.path()).unwrap_err().to_string();
        assert!(e.contains("remove it and restart"), "{e}");
    }
}

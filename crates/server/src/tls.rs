//! TLS with rustls (aws-lc-rs provider): certificate chain and key from PEM files, ALPN offering
//! HTTP/2 and HTTP/1.1.

use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;

use crate::config::TlsFiles;

/// Why the TLS acceptor could not be made: every variant is the operator's files.
#[non_exhaustive]
#[derive(Debug)]
pub enum TlsError {
    /// The certificate file could not be read or is not PEM.
    Cert { path: PathBuf, error: pem::Error },
    /// The certificate file holds no certificate.
    NoCert { path: PathBuf },
    /// The key file could not be read or holds no private key.
    Key { path: PathBuf, error: pem::Error },
    /// rustls refused the pair (a key that does not match the certificate, of a kind it does
    /// not support, ...).
    Refused(rustls::Error),
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Cert { path, error } | TlsError::Key { path, error } => {
                write!(f, "{}: {error}", path.display())
            }
            TlsError::NoCert { path } => write!(f, "{}: no certificate", path.display()),
            TlsError::Refused(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TlsError {}

pub fn acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let cert_error = |error| TlsError::Cert {
        path: files.cert.clone(),
        error,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(cert_error)?
        .collect::<Result<_, _>>()
        .map_err(cert_error)?;
    if certs.is_empty() {
        return Err(TlsError::NoCert {
            path: files.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|error| TlsError::Key {
        path: files.key.clone(),
        error,
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Refused)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::Refused)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

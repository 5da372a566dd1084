//! TLS with rustls (aws-lc-rs provider): certificate chain and key from PEM files, ALPN offering
//! HTTP/2 and HTTP/1.1, and client certificates when asked for (RFC 8705).
//!
//! A client certificate is taken at the handshake whoever issued it, once the client has proved
//! it holds the certificate's key (the handshake signature, checked by rustls with the
//! provider's algorithms): `self_signed_tls_client_auth` clients are their own issuers. What a
//! certificate is worth is decided per request, by the endpoint that reads it
//! ([`ClientCertificate`] in the request's extensions): a `tls_client_auth` client's chain is
//! validated then against the configured client CAs ([`ClientCa`]).

use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::crypto::WebPkiSupportedAlgorithms;
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::config::{ClientCertMode, TlsFiles};

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
    /// The client CA file could not be read, holds no certificate, or one that is no CA.
    ClientCa { path: PathBuf, error: String },
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Cert { path, error } | TlsError::Key { path, error } => {
                write!(f, "{}: {error}", path.display())
            }
            TlsError::NoCert { path } => write!(f, "{}: no certificate", path.display()),
            TlsError::Refused(e) => write!(f, "{e}"),
            TlsError::ClientCa { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for TlsError {}

/// The TLS side of the daemon: the acceptor, and the client CAs when configured.
pub struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// Whether the handshake asks for client certificates.
    pub client_certificates: bool,
    pub client_ca: Option<ClientCa>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("client_certificates", &self.client_certificates)
            .field("client_ca", &self.client_ca.is_some())
            .finish_non_exhaustive()
    }
}

pub fn acceptor(files: &TlsFiles) -> Result<Tls, TlsError> {
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
    let client_ca = match &files.client_ca {
        Some(path) => Some(ClientCa::load(path, &provider)?),
        None => None,
    };
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Refused)?;
    let builder = match files.client_auth {
        ClientCertMode::None => builder.with_no_client_auth(),
        mode => builder.with_client_cert_verifier(Arc::new(AnyClientCertificate {
            mandatory: mode == ClientCertMode::Require,
            algorithms: provider.signature_verification_algorithms,
        })),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(TlsError::Refused)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Tls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        client_certificates: files.client_auth != ClientCertMode::None,
        client_ca,
    })
}

/// The certificate chain a client presented in the handshake (leaf first), with proof that it
/// holds the leaf's key; nothing about who issued it. In the extensions of each request of the
/// connection.
#[derive(Clone, Debug)]
pub struct ClientCertificate(Arc<[CertificateDer<'static>]>);

impl ClientCertificate {
    /// The chain of a finished handshake; `None` without one.
    pub fn of(connection: &rustls::ServerConnection) -> Option<ClientCertificate> {
        let chain = connection.peer_certificates()?;
        if chain.is_empty() {
            return None;
        }
        Some(ClientCertificate(
            chain.iter().map(|c| c.clone().into_owned()).collect(),
        ))
    }

    /// The leaf certificate's DER.
    pub fn leaf(&self) -> &[u8] {
        self.0[0].as_ref()
    }
}

/// The CAs `tls_client_auth` clients' certificates chain to: RFC 5280 path validation by
/// webpki (through rustls), the client-auth extended key usage required when a certificate
/// names its usages, expiry checked.
pub struct ClientCa(Arc<dyn ClientCertVerifier>);

impl std::fmt::Debug for ClientCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientCa")
    }
}

impl ClientCa {
    fn load(
        path: &std::path::Path,
        provider: &Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<ClientCa, TlsError> {
        let fail = |error: String| TlsError::ClientCa {
            path: path.to_owned(),
            error,
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| fail(e.to_string()))? {
            let cert = cert.map_err(|e| fail(e.to_string()))?;
            roots.add(cert).map_err(|e| fail(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(fail("no certificate".into()));
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(provider),
        )
        .build()
        .map_err(|e| fail(e.to_string()))?;
        Ok(ClientCa(verifier))
    }

    /// Whether the chain leads from the leaf to one of the CAs, now.
    pub fn validates(&self, chain: &ClientCertificate) -> Result<(), rustls::Error> {
        let (leaf, intermediates) = chain
            .0
            .split_first()
            .ok_or(rustls::Error::NoCertificatesPresented)?;
        self.0
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map(|_| ())
    }
}

/// Takes any client certificate whose key signed the handshake; see the module's comment.
#[derive(Debug)]
struct AnyClientCertificate {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCertificate {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    /// No hints: a client that has a certificate sends it (RFC 8446 section 4.2.4), whichever
    /// issued it.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Taken as presented: a certificate that does not parse fails the signature check
        // below, and the endpoints decide what a parsed one is worth.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

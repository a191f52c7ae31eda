//! HTTPS: a certificate chain and its private key, read from PEM files as llama-server's
//! `--ssl-cert-file` and `--ssl-key-file` take them, made into a rustls server configuration.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Largest PEM file read. A certificate chain or a key is a few kilobytes; the cap keeps a
/// wrong path (a model file, `/dev/zero`) from being read whole.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// Why a certificate or key cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is larger than {MAX_PEM_BYTES} bytes: not a PEM certificate or key", path.display())]
    TooLarge { path: PathBuf },
    #[error("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoKey { path: PathBuf },
    #[error("{} is not valid PEM: {message}", path.display())]
    BadPem { path: PathBuf, message: String },
    #[error("the certificate and key cannot be served together: {0}")]
    Rejected(rustls::Error),
}

/// What a TLS listener needs: the server configuration, shared by every connection.
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) server: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Reads the certificate chain (leaf first) and the private key from PEM files.
    pub fn from_pem_files(cert_path: &Path, key_path: &Path) -> Result<TlsConfig, TlsError> {
        let cert_pem = read_pem(cert_path)?;
        let key_pem = read_pem(key_path)?;
        TlsConfig::from_pem(cert_path, &cert_pem, key_path, &key_pem)
    }

    /// As [`TlsConfig::from_pem_files`], from the files' contents; the paths name them in
    /// errors.
    pub fn from_pem(
        cert_path: &Path,
        cert_pem: &[u8],
        key_path: &Path,
        key_pem: &[u8],
    ) -> Result<TlsConfig, TlsError> {
        let bad_pem = |path: &Path, error: rustls_pki_types::pem::Error| TlsError::BadPem {
            path: path.to_path_buf(),
            message: error.to_string(),
        };
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad_pem(cert_path, e))?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate {
                path: cert_path.to_path_buf(),
            });
        }
        let key = match PrivateKeyDer::from_pem_slice(key_pem) {
            Ok(key) => key,
            Err(rustls_pki_types::pem::Error::NoItemsFound) => {
                return Err(TlsError::NoKey {
                    path: key_path.to_path_buf(),
                })
            }
            Err(e) => return Err(bad_pem(key_path, e)),
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Rejected)?
            .with_no_client_auth()
            // Checks that the key is one rustls can sign with and that it matches the leaf.
            .with_single_cert(chain, key)
            .map_err(TlsError::Rejected)?;
        // The server speaks HTTP/1.1 only; saying so lets a client that offers h2 fall back
        // during the handshake instead of failing after it.
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsConfig {
            server: Arc::new(server),
        })
    }
}

/// The contents of a PEM file, refused past [`MAX_PEM_BYTES`].
fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    let read_error = |source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

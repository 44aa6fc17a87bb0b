//! The server's TLS identity: a self-signed certificate made on first start and kept in
//! `<data_dir>/tls/` (`cert.pem`, and `key.pem` with mode 0600). Clients pin its SHA-256.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::fsutil;

/// A loaded certificate and key.
#[derive(Debug)]
pub struct Identity {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
    /// `SHA256:<hex>` of the certificate's DER.
    pub fingerprint: String,
}

pub fn cert_path(data_dir: &Path) -> PathBuf {
    data_dir.join("tls").join("cert.pem")
}

pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("tls").join("key.pem")
}

/// Loads the identity, creating a new self-signed one if none exists yet.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Identity> {
    if !cert_path(data_dir).exists() {
        create(data_dir)?;
    }
    load(data_dir)
}

/// Loads an existing identity.
pub fn load(data_dir: &Path) -> anyhow::Result<Identity> {
    use anyhow::Context;
    let cert_file = cert_path(data_dir);
    let cert = CertificateDer::from_pem_file(&cert_file)
        .with_context(|| format!("cannot read the certificate {}", cert_file.display()))?;
    let key_file = key_path(data_dir);
    let key = PrivateKeyDer::from_pem_file(&key_file)
        .with_context(|| format!("cannot read the private key {}", key_file.display()))?;
    let fingerprint = vault_proto::fingerprint::sha256_fingerprint(&cert);
    Ok(Identity {
        cert,
        key,
        fingerprint,
    })
}

/// Makes a new self-signed certificate, replacing any old one. Clients that pinned the
/// old one will refuse the server until their users accept the new fingerprint.
pub fn create(data_dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let names = vec!["localhost".to_string(), "vault-server".to_string()];
    let certified = rcgen::generate_simple_self_signed(names)?;
    let dir = data_dir.join("tls");
    fsutil::create_private_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key_file = key_path(data_dir);
    fsutil::write_atomic(
        &key_file,
        certified.signing_key.serialize_pem().as_bytes(),
        0o600,
    )
    .with_context(|| format!("cannot write the private key {}", key_file.display()))?;
    let cert_file = cert_path(data_dir);
    fsutil::write_atomic(&cert_file, certified.cert.pem().as_bytes(), 0o644)
        .with_context(|| format!("cannot write the certificate {}", cert_file.display()))?;
    Ok(())
}

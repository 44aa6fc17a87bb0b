//! The server's TLS identity: a self-signed certificate made on first start and kept in
//! `<data_dir>/tls/` (`cert.pem`, and `key.pem` with mode 0600), or the files
//! `tls.cert_file` and `tls.key_file` name (several instances of one deployment present the
//! same certificate). Clients pin its SHA-256.

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

/// Where the certificate and key are: the configured files, or `<data_dir>/tls/`.
pub fn files(config: &crate::config::Config) -> (PathBuf, PathBuf) {
    match configured(config) {
        Some(files) => files,
        None => (cert_path(&config.data_dir), key_path(&config.data_dir)),
    }
}

fn configured(config: &crate::config::Config) -> Option<(PathBuf, PathBuf)> {
    let tls = &config.tls;
    (!tls.cert_file.as_os_str().is_empty()).then(|| (tls.cert_file.clone(), tls.key_file.clone()))
}

/// Loads the identity: the configured files, which must exist, or `<data_dir>/tls/`,
/// where a new self-signed one is made if none exists yet.
pub fn load_or_create(config: &crate::config::Config) -> anyhow::Result<Identity> {
    if let Some((cert, key)) = configured(config) {
        for (file, key_name) in [(&cert, "tls.cert_file"), (&key, "tls.key_file")] {
            if !file.exists() {
                anyhow::bail!(
                    "{key_name} = {}: no such file. Every instance of a deployment needs the \
                     same certificate: copy cert.pem and key.pem from the first instance's \
                     <data_dir>/tls/ (or use your own), or leave tls.cert_file empty to use \
                     <data_dir>/tls/",
                    file.display()
                );
            }
        }
        return load_files(&cert, &key);
    }
    if !cert_path(&config.data_dir).exists() {
        create(&config.data_dir)?;
    }
    load(&config.data_dir)
}

/// Loads an existing identity from `<data_dir>/tls/`.
pub fn load(data_dir: &Path) -> anyhow::Result<Identity> {
    load_files(&cert_path(data_dir), &key_path(data_dir))
}

/// Loads an identity from a PEM certificate and a PEM private key.
pub fn load_files(cert_file: &Path, key_file: &Path) -> anyhow::Result<Identity> {
    use anyhow::Context;
    let cert = CertificateDer::from_pem_file(cert_file)
        .with_context(|| format!("cannot read the certificate {}", cert_file.display()))?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("cannot read the private key {}", key_file.display()))?;
    let fingerprint = vault_proto::fingerprint::sha256_fingerprint(&cert);
    Ok(Identity {
        cert,
        key,
        fingerprint,
    })
}

/// Makes a new self-signed certificate in `<data_dir>/tls/`, replacing any old one.
/// Clients that pinned the old one will refuse the server until their users accept the
/// new fingerprint.
pub fn create(data_dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let dir = data_dir.join("tls");
    fsutil::create_private_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    write_new(&cert_path(data_dir), &key_path(data_dir))
}

/// Writes a new self-signed certificate and its key (mode 0600) to these files.
pub fn write_new(cert_file: &Path, key_file: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let names = vec!["localhost".to_string(), "vault-server".to_string()];
    let certified = rcgen::generate_simple_self_signed(names)?;
    fsutil::write_atomic(
        key_file,
        certified.signing_key.serialize_pem().as_bytes(),
        0o600,
    )
    .with_context(|| format!("cannot write the private key {}", key_file.display()))?;
    fsutil::write_atomic(cert_file, certified.cert.pem().as_bytes(), 0o644)
        .with_context(|| format!("cannot write the certificate {}", cert_file.display()))?;
    Ok(())
}

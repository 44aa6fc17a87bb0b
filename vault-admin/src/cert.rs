//! `vault-admin cert show`: where the server's TLS certificate is and its fingerprint,
//! the `SHA256:…` value clients pin (from `<data_dir>/tls/` or `tls.cert_file`); and `cert
//! new DIR`, a certificate for the instances of a deployment to share. Needs no database.

use clap::Subcommand;
use serde::Serialize;

use crate::context::Ctx;
use crate::output;

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Show the certificate's path and SHA-256 fingerprint.
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Make a new self-signed certificate as DIR/cert.pem and DIR/key.pem, for
    /// tls.cert_file and tls.key_file (every instance of a deployment gets the same pair).
    New {
        /// A directory (created if missing) without cert.pem or key.pem in it.
        dir: std::path::PathBuf,
    },
}

/// What `cert show --json` prints.
#[derive(Debug, Serialize)]
struct CertInfo {
    path: String,
    fingerprint: String,
}

pub fn run(ctx: &Ctx, command: CertCommand) -> anyhow::Result<()> {
    match command {
        CertCommand::Show { json } => show(ctx, json),
        CertCommand::New { dir } => new(&dir),
    }
}

fn new(dir: &std::path::Path) -> anyhow::Result<()> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    for file in [&cert, &key] {
        if file.exists() {
            anyhow::bail!(
                "{} exists: a new certificate would lock out every client that pinned the old \
                 one; choose another directory",
                file.display()
            );
        }
    }
    vault_server::fsutil::create_private_dir(dir)?;
    vault_server::tls::write_new(&cert, &key)?;
    let identity = vault_server::tls::load_files(&cert, &key)?;
    output::print_fields(&[
        ("certificate", cert.display().to_string()),
        ("key", key.display().to_string()),
        ("fingerprint", identity.fingerprint),
    ])?;
    Ok(())
}

fn show(ctx: &Ctx, json: bool) -> anyhow::Result<()> {
    let (path, key) = vault_server::tls::files(&ctx.config);
    if !path.exists() {
        anyhow::bail!(
            "no certificate at {}: check --data-dir, --config or tls.cert_file (vault-server creates one in <data_dir>/tls/ on first start)",
            path.display()
        );
    }
    let identity = vault_server::tls::load_files(&path, &key)?;
    let info = CertInfo {
        path: path.display().to_string(),
        fingerprint: identity.fingerprint,
    };
    if json {
        return output::print_json(&info);
    }
    output::print_fields(&[
        ("certificate", info.path),
        ("fingerprint", info.fingerprint),
    ])?;
    Ok(())
}

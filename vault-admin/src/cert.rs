//! `vault-admin cert show`: where the server's TLS certificate is and its fingerprint,
//! the `SHA256:…` value clients pin. Reads `<data_dir>/tls/` or `tls.cert_file`; needs no
//! database.

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
    }
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

//! `vault-server --check-config`: loads the configuration as a start would, then checks
//! what a start needs from outside — the TLS certificate, the database, the blob store
//! and the mail transport — without changing anything (no migration runs, no file is
//! created), and says for each what is wrong and what to do.

use std::path::Path;

use crate::blobs::{self, BlobId};
use crate::config::Config;
use crate::db::{Db, redact_url};
use crate::mail::Mailer;
use crate::{DataDir, tls};

/// One line of the report: what was checked, and what was found.
#[derive(Debug)]
pub struct Finding {
    pub what: &'static str,
    pub result: Result<String, String>,
}

/// Checks `config`; every finding, in the order a start meets them.
pub async fn check(config: &Config) -> Vec<Finding> {
    let data = DataDir(config.data_dir.clone());
    let mut found = vec![Finding {
        what: "certificate",
        result: certificate(config),
    }];
    let db_config = config.clone();
    found.push(Finding {
        what: "database",
        result: tokio::task::spawn_blocking(move || database(&db_config))
            .await
            .unwrap_or_else(|e| Err(format!("the check failed: {e}"))),
    });
    let storage = config.storage.clone();
    let root = data.blobs();
    found.push(Finding {
        what: "blob store",
        result: tokio::task::spawn_blocking(move || blob_store(&storage, &root))
            .await
            .unwrap_or_else(|e| Err(format!("the check failed: {e}"))),
    });
    found.push(Finding {
        what: "mail",
        result: match Mailer::from_config(&config.mail, data.outbox()) {
            Ok(mailer) => mailer.check().await,
            Err(e) => Err(format!("{e}: fix [mail] in the configuration")),
        },
    });
    found
}

fn certificate(config: &Config) -> Result<String, String> {
    let (cert, key) = tls::files(config);
    if !cert.exists() && config.tls.cert_file.as_os_str().is_empty() {
        return Ok(format!(
            "none yet: the first start makes a self-signed one in {}",
            cert.parent().unwrap_or(Path::new(".")).display()
        ));
    }
    tls::load_files(&cert, &key)
        .map(|identity| format!("{} ({})", cert.display(), identity.fingerprint))
        .map_err(|e| format!("{e:#}"))
}

fn database(config: &Config) -> Result<String, String> {
    let url = config.database_url();
    let shown = redact_url(&url);
    let is_postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if !is_postgres {
        let file = Path::new(url.strip_prefix("sqlite://").unwrap_or(&url));
        if !file.exists() {
            return Ok(format!(
                "{shown}: not there yet, the first start creates it"
            ));
        }
    }
    if is_postgres {
        // One plain connection first: a server that does not answer fails at once, not
        // after the pool's retries.
        use diesel::Connection;
        diesel::pg::PgConnection::establish(&url).map_err(|e| {
            let why: Vec<String> = e.to_string().lines().map(|l| l.trim().to_owned()).collect();
            format!("{shown}: {}: check database_url", why.join(" "))
        })?;
    }
    let db = Db::connect(&url).map_err(|e| format!("{e}: check database_url"))?;
    let pending = db
        .pending_migrations()
        .map_err(|e| format!("{shown}: {e}"))?;
    Ok(match pending {
        0 => format!("{shown}: reachable, up to date"),
        n => format!("{shown}: reachable, {n} migrations to run (the start runs them)"),
    })
}

fn blob_store(storage: &crate::config::StorageConfig, root: &Path) -> Result<String, String> {
    if storage.kind == "fs" && !root.exists() {
        return Ok(format!(
            "{}: not there yet, the first start creates it",
            root.display()
        ));
    }
    let store = blobs::open(storage, root).map_err(|e| format!("cannot open it: {e}"))?;
    // A read of a blob that cannot exist: the bucket answers, and the credentials hold.
    store
        .size(&BlobId::random())
        .map_err(|e| format!("cannot read it: {e}"))?;
    Ok(match storage.kind.as_str() {
        "s3" => format!("{}: reachable", storage.s3().describe()),
        _ => format!("{}: readable", root.display()),
    })
}

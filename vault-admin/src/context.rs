//! What every command works on: the server's configuration, loaded exactly as
//! `vault-server` loads it, and its database, opened directly (the server may be running
//! or not), and its blob store. Also the one way the admin tool writes to the audit log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use vault_server::DataDir;
use vault_server::blobs::{self, BlobStore};
use vault_server::config::Config;
use vault_server::db::Db;

/// The configuration and, on demand, the database.
#[derive(Debug)]
pub struct Ctx {
    pub config: Config,
}

impl Ctx {
    /// Opens the configured database, running pending migrations. A SQLite file that does
    /// not exist yet is refused rather than created: it almost always means a wrong
    /// `--data-dir`, and an empty new database would answer every question with "nothing".
    pub fn db(&self) -> anyhow::Result<Db> {
        let url = self.config.database_url();
        if let Some(path) = sqlite_path(&url).filter(|p| !p.exists()) {
            bail!(
                "no database at {}: check --data-dir, --config or --database-url \
                 (vault-server creates it on first start; `vault-admin migrate` creates an empty one)",
                path.display()
            );
        }
        Db::open(&url).context("cannot open the server's database")
    }

    /// Opens the server's blob store: `<data-dir>/blobs`, refusing a missing one for the
    /// same reason as a missing database, or the configured bucket (`storage.kind = "s3"`).
    pub fn blobs(&self) -> anyhow::Result<Arc<dyn BlobStore>> {
        let root = DataDir(self.config.data_dir.clone()).blobs();
        let storage = &self.config.storage;
        if storage.kind == "fs" && !root.is_dir() {
            bail!(
                "no blob store at {}: check --data-dir or --config (vault-server creates it \
                 on first start)",
                root.display()
            );
        }
        blobs::open(storage, &root).with_context(|| match storage.kind.as_str() {
            "s3" => format!("cannot open the blob store {}", storage.s3().describe()),
            _ => format!("cannot open the blob store at {}", root.display()),
        })
    }

    /// Connects without migrating, creating a missing SQLite file; for `migrate`.
    pub fn db_unmigrated(&self) -> anyhow::Result<Db> {
        let url = self.config.database_url();
        let path = sqlite_path(&url);
        let parent = path.as_deref().and_then(Path::parent);
        if let Some(parent) = parent.filter(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
            bail!(
                "no directory {}: check --data-dir, --config or --database-url",
                parent.display()
            );
        }
        Db::connect(&url).context("cannot open the server's database")
    }
}

/// The file behind a SQLite URL, `None` for PostgreSQL (as `Db::open` reads URLs).
fn sqlite_path(url: &str) -> Option<PathBuf> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return None;
    }
    let path = url.strip_prefix("sqlite://").unwrap_or(url);
    (path != ":memory:").then(|| PathBuf::from(path))
}

/// Writes one of the operator's changes to the audit log, with actor `admin`.
pub use vault_server::accounts::change::record;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_from_urls() {
        assert_eq!(
            sqlite_path("sqlite://vault-data/vault.db"),
            Some(PathBuf::from("vault-data/vault.db"))
        );
        assert_eq!(
            sqlite_path("sqlite:///srv/v.db"),
            Some(PathBuf::from("/srv/v.db"))
        );
        assert_eq!(sqlite_path("/srv/v.db"), Some(PathBuf::from("/srv/v.db")));
        assert_eq!(sqlite_path("postgres://u@h/db"), None);
        assert_eq!(sqlite_path("postgresql://u@h/db"), None);
    }
}

//! What the handler tests share: a server state on a temp SQLite file (or, with
//! `VAULT_TEST_POSTGRES_URL` set, a fresh database on that PostgreSQL server), and accounts
//! with sessions, made straight in the database.

use std::sync::Arc;

use diesel::RunQueryDsl;

use crate::blobs::{BlobId, BlobStore, FsBlobStore};
use crate::config::Config;
use crate::db::{self, Db, DbConn};
use crate::mail::queue::{MailQueue, MailWorker};
use crate::net::connection::SessionCtx;
use crate::state::ServerState;

pub type R<T> = Result<T, Box<dyn std::error::Error>>;

/// With `VAULT_TEST_POSTGRES_URL` set (a server where the user may create databases), a
/// fresh database on it for one test, named after `prefix`; else `None` (the test uses a
/// temp SQLite file).
pub fn fresh_postgres_database(prefix: &str) -> R<Option<String>> {
    use diesel::Connection;
    let Ok(url) = std::env::var("VAULT_TEST_POSTGRES_URL") else {
        return Ok(None);
    };
    let name = format!("vault_{prefix}_{}", BlobId::random().as_str());
    let mut admin = diesel::PgConnection::establish(&url)?;
    diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut admin)?;
    let base = url.split('?').next().unwrap_or(&url);
    let (server, _) = base
        .rsplit_once('/')
        .ok_or("VAULT_TEST_POSTGRES_URL needs a database name")?;
    Ok(Some(format!("{server}/{name}")))
}

/// A server state in `dir` with the default configuration changed by `config`, and the
/// blob store `store` makes of the plain one (a test may wrap it to make it fail). Its
/// mail queue has no worker: what it would mail is dropped.
pub fn state(
    dir: &tempfile::TempDir,
    prefix: &str,
    config: impl FnOnce(&mut Config),
    store: impl FnOnce(FsBlobStore) -> Arc<dyn BlobStore>,
) -> R<ServerState> {
    Ok(state_with_mail(dir, prefix, config, store)?.0)
}

/// [`state`], and the worker side of its mail queue, from which a test takes what the
/// handlers queued.
pub fn state_with_mail(
    dir: &tempfile::TempDir,
    prefix: &str,
    config: impl FnOnce(&mut Config),
    store: impl FnOnce(FsBlobStore) -> Arc<dyn BlobStore>,
) -> R<(ServerState, MailWorker)> {
    let mut cfg = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config(&mut cfg);
    if let Some(url) = fresh_postgres_database(prefix)? {
        cfg.database_url = url;
    }
    let db = Db::open(&cfg.database_url())?;
    let blobs = store(FsBlobStore::open(dir.path().join("blobs"))?);
    let (mail, worker) = MailQueue::new(cfg.mail.queue_size);
    let state = ServerState::new(cfg, db, blobs, mail, [0; 32], String::new());
    Ok((state, worker))
}

/// An account `name` with public key `public_key` and quota `quota` bytes.
pub fn add_user(
    conn: &mut DbConn,
    name: &str,
    public_key: &[u8],
    quota: i64,
) -> R<db::users::User> {
    let email = format!("{name}@example.org");
    Ok(db::users::insert(
        conn,
        &db::users::NewUser {
            username: name,
            email: &email,
            auth_hash: "x",
            kdf_salt: &[0; 16],
            kdf_memory_kib: 8,
            kdf_iterations: 1,
            kdf_parallelism: 1,
            account_key_by_kek: &[],
            account_key_by_recovery: &[],
            public_key,
            private_key_sealed: &[],
            quota_bytes: quota,
            locked: false,
            created_at: db::now(),
        },
    )?)
}

/// An account as [`add_user`] makes it, with a live session.
pub fn add_user_with_session(
    conn: &mut DbConn,
    name: &str,
    public_key: &[u8],
    quota: i64,
) -> R<SessionCtx> {
    let user = add_user(conn, name, public_key, quota)?;
    let token = format!("token of {name}");
    let session = db::sessions::insert(conn, user.id, token.as_bytes(), "127.0.0.1")?;
    Ok(SessionCtx {
        session_id: session.id,
        user_id: user.id,
        username: name.to_owned(),
    })
}

/// With `VAULT_TEST_S3_ENDPOINT`, `_BUCKET`, `_ACCESS_KEY_ID` and `_SECRET_ACCESS_KEY` set
/// (`.ci/garage start` prints them), settings for that bucket under a fresh prefix of its
/// own; else `None`.
pub fn s3_settings() -> Option<crate::blobs::S3Settings> {
    let var = |name: &str| std::env::var(format!("VAULT_TEST_S3_{name}")).ok();
    Some(crate::blobs::S3Settings {
        endpoint: var("ENDPOINT").filter(|e| !e.is_empty())?,
        bucket: var("BUCKET")?,
        region: var("REGION").unwrap_or_else(|| "garage".into()),
        access_key_id: var("ACCESS_KEY_ID")?,
        secret_access_key: zeroize::Zeroizing::new(var("SECRET_ACCESS_KEY")?),
        path_style: true,
        prefix: format!("test-{}/", BlobId::random()),
    })
}

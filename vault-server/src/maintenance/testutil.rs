//! Test fixtures for maintenance: a temp SQLite database and `FsBlobStore` (or a server
//! state's, which is on PostgreSQL when `VAULT_TEST_POSTGRES_URL` is set), and rows
//! inserted directly (no client or server needed).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use diesel::prelude::*;

use super::Policy;
use crate::blobs::{BlobId, BlobStore, FsBlobStore, hash};
use crate::config::Config;
use crate::db::schema::{
    chunks, entries, groups, namespaces, trash, uploads, version_chunks, versions,
};
use crate::db::{Db, DbConn};
use crate::state::ServerState;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;
pub type R<T> = Result<T, Box<dyn std::error::Error>>;

/// The "now" of the tests.
pub const NOW: i64 = 1_800_000_000;

#[derive(Debug)]
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub db: Db,
    pub store: FsBlobStore,
}

impl Fixture {
    pub fn new() -> R<Fixture> {
        let dir = tempfile::tempdir()?;
        let db = Db::open(&dir.path().join("vault.db").display().to_string())?;
        let store = FsBlobStore::open(dir.path().join("blobs"))?;
        Ok(Fixture { dir, db, store })
    }

    /// A fixture on the database and blob store of a server state made with `config`.
    pub fn with_state(config: impl FnOnce(&mut Config)) -> R<(Fixture, ServerState)> {
        let dir = tempfile::tempdir()?;
        let mut store = None;
        let state = crate::testing::state(&dir, "maintenance", config, |s| {
            store = Some(s.clone());
            Arc::new(s)
        })?;
        let store = store.ok_or("the state made no blob store")?;
        let db = state.db.clone();
        Ok((Fixture { dir, db, store }, state))
    }

    pub fn conn(
        &self,
    ) -> R<diesel::r2d2::PooledConnection<diesel::r2d2::ConnectionManager<DbConn>>> {
        Ok(self.db.conn()?)
    }

    pub fn policy(&self) -> Policy {
        Policy {
            version_retention: 10,
            trash_retention_days: 30,
            blob_grace_s: 3600,
        }
    }

    pub fn namespace(&self, c: &mut DbConn, owner: i64) -> R<i64> {
        diesel::insert_into(namespaces::table)
            .values((
                namespaces::kind.eq("personal"),
                namespaces::owner_user_id.eq(owner),
                namespaces::created_at.eq(NOW),
            ))
            .execute(c)?;
        Ok(namespaces::table
            .filter(namespaces::owner_user_id.eq(owner))
            .select(namespaces::id)
            .first(c)?)
    }

    fn insert_entry(
        &self,
        c: &mut DbConn,
        ns: i64,
        path: &str,
        kind: &str,
        current: Option<i64>,
        trash_id: Option<i64>,
    ) -> R<i64> {
        let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
        diesel::insert_into(entries::table)
            .values((
                entries::namespace_id.eq(ns),
                entries::path.eq(path),
                entries::parent.eq(parent),
                entries::kind.eq(kind),
                entries::current_version.eq(current),
                entries::next_version.eq(current.unwrap_or(0) + 1),
                entries::revision.eq(1),
                entries::created_at.eq(NOW),
                entries::updated_at.eq(NOW),
                entries::trash_id.eq(trash_id),
            ))
            .execute(c)?;
        Ok(entries::table
            .order(entries::id.desc())
            .select(entries::id)
            .first(c)?)
    }

    /// A live file entry (`current` None: pending, invisible).
    pub fn entry(&self, c: &mut DbConn, ns: i64, path: &str, current: Option<i64>) -> R<i64> {
        self.insert_entry(c, ns, path, "file", current, None)
    }

    /// A group `name` and its namespace.
    pub fn group_namespace(&self, c: &mut DbConn, name: &str) -> R<i64> {
        diesel::insert_into(groups::table)
            .values((groups::name.eq(name), groups::created_at.eq(NOW)))
            .execute(c)?;
        let group: i64 = groups::table
            .filter(groups::name.eq(name))
            .select(groups::id)
            .first(c)?;
        diesel::insert_into(namespaces::table)
            .values((
                namespaces::kind.eq("group"),
                namespaces::group_id.eq(group),
                namespaces::created_at.eq(NOW),
            ))
            .execute(c)?;
        Ok(namespaces::table
            .filter(namespaces::group_id.eq(group))
            .select(namespaces::id)
            .first(c)?)
    }

    pub fn dir_entry(&self, c: &mut DbConn, ns: i64, path: &str) -> R<i64> {
        self.insert_entry(c, ns, path, "dir", None, None)
    }

    /// A sealed blob holding `data`.
    pub fn blob(&self, data: &[u8]) -> R<BlobId> {
        let id = BlobId::random();
        self.partial_with(&id, data)?;
        self.store.seal_partial(&id)?;
        Ok(id)
    }

    pub fn partial(&self, data: &[u8]) -> R<BlobId> {
        let id = BlobId::random();
        self.partial_with(&id, data)?;
        Ok(id)
    }

    fn partial_with(&self, id: &BlobId, data: &[u8]) -> R<()> {
        let mut w = self.store.write_partial(id, 0)?;
        w.write_all(data)?;
        w.sync()?;
        Ok(())
    }

    /// A version of `size` bytes with its blob and the blob's recorded hash, as every
    /// upload stores one; returns the row id and the blob id.
    pub fn version(&self, c: &mut DbConn, entry: i64, v: i64, size: usize) -> R<(i64, BlobId)> {
        let bytes = vec![7u8; size];
        self.version_of(c, entry, v, &bytes, Some(hash::of_bytes(&bytes)))
    }

    /// A version holding `bytes`, with `hash` recorded (`None`: stored before hashes
    /// were recorded).
    pub fn version_of(
        &self,
        c: &mut DbConn,
        entry: i64,
        v: i64,
        bytes: &[u8],
        hash: Option<hash::BlobHash>,
    ) -> R<(i64, BlobId)> {
        let size = bytes.len();
        let blob = self.blob(bytes)?;
        diesel::insert_into(versions::table)
            .values((
                versions::entry_id.eq(entry),
                versions::version.eq(v),
                versions::blob_id.eq(blob.as_str()),
                versions::sealed_size.eq(size as i64),
                versions::wrapped_key.eq(vec![1u8; 4]),
                versions::sealed_meta.eq(vec![2u8; 4]),
                versions::created_at.eq(NOW),
                versions::blob_blake3.eq(hash.map(|h| h.to_vec())),
            ))
            .execute(c)?;
        let id = versions::table
            .filter(versions::blob_id.eq(blob.as_str()))
            .select(versions::id)
            .first(c)?;
        Ok((id, blob))
    }

    /// A chunk (format 2) of namespace `ns` holding `bytes`, with its blob and its hash
    /// recorded, as `chunk_put` stores one; returns the row id and the blob id.
    pub fn chunk(&self, c: &mut DbConn, ns: i64, bytes: &[u8]) -> R<(i64, BlobId)> {
        let blob = self.blob(bytes)?;
        let chunk_id = *blake3::hash(blob.as_str().as_bytes()).as_bytes();
        crate::db::files::chunks::insert(
            c,
            &crate::db::files::chunks::NewChunk {
                namespace_id: ns,
                chunk_id: &chunk_id,
                blob_id: blob.as_str(),
                sealed_size: bytes.len() as i64,
                blob_blake3: &hash::of_bytes(bytes),
                used_at: NOW,
            },
        )?;
        let id = chunks::table
            .filter(chunks::blob_id.eq(blob.as_str()))
            .select(chunks::id)
            .first(c)?;
        Ok((id, blob))
    }

    /// Records that version row `version` uses chunk row `chunk`.
    pub fn uses(&self, c: &mut DbConn, version: i64, chunk: i64) -> R<()> {
        diesel::insert_into(version_chunks::table)
            .values((
                version_chunks::version_id.eq(version),
                version_chunks::chunk.eq(chunk),
            ))
            .execute(c)?;
        Ok(())
    }

    /// Where the sealed blob `id` is on disk, to damage it behind the store's back.
    pub fn blob_path(&self, id: &BlobId) -> PathBuf {
        self.store.root().join(&id.as_str()[..2]).join(id.as_str())
    }

    /// An upload with a partial holding `data`; returns the partial's blob id.
    pub fn upload(
        &self,
        c: &mut DbConn,
        ns: i64,
        entry: i64,
        expires_at: i64,
        data: &[u8],
    ) -> R<BlobId> {
        let id = self.partial(data)?;
        diesel::insert_into(uploads::table)
            .values((
                uploads::user_id.eq(1),
                uploads::namespace_id.eq(ns),
                uploads::entry_id.eq(entry),
                uploads::version.eq(1),
                uploads::sealed_size.eq(1 << 20),
                uploads::blob_id.eq(id.as_str()),
                uploads::created_at.eq(NOW - 100),
                uploads::expires_at.eq(expires_at),
            ))
            .execute(c)?;
        Ok(id)
    }

    /// A file with one version of `size` bytes, trashed at `at`; returns the trash id and
    /// the blob id.
    pub fn trashed_file(
        &self,
        c: &mut DbConn,
        ns: i64,
        path: &str,
        at: i64,
        size: usize,
    ) -> R<(i64, BlobId)> {
        diesel::insert_into(trash::table)
            .values((
                trash::namespace_id.eq(ns),
                trash::root_entry_id.eq(0),
                trash::path.eq(path),
                trash::kind.eq("file"),
                trash::entries.eq(1),
                trash::sealed_bytes.eq(size as i64),
                trash::trashed_at.eq(at),
            ))
            .execute(c)?;
        let item: i64 = trash::table
            .order(trash::id.desc())
            .select(trash::id)
            .first(c)?;
        let e = self.insert_entry(c, ns, path, "file", Some(1), Some(item))?;
        diesel::update(trash::table.find(item))
            .set(trash::root_entry_id.eq(e))
            .execute(c)?;
        let (_, blob) = self.version(c, e, 1, size)?;
        Ok((item, blob))
    }

    pub fn set_used(&self, c: &mut DbConn, ns: i64, bytes: i64) -> R<()> {
        diesel::update(namespaces::table.find(ns))
            .set(namespaces::used_bytes.eq(bytes))
            .execute(c)?;
        Ok(())
    }

    pub fn used(&self, c: &mut DbConn, ns: i64) -> R<i64> {
        Ok(namespaces::table
            .find(ns)
            .select(namespaces::used_bytes)
            .first(c)?)
    }

    pub fn revision(&self, c: &mut DbConn, ns: i64) -> R<i64> {
        Ok(namespaces::table
            .find(ns)
            .select(namespaces::revision)
            .first(c)?)
    }
}

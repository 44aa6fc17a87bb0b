//! Typed file requests: each encrypts the paths it sends and decrypts and verifies what
//! comes back (names, wrapped keys, metadata), so callers only see plaintext that opened.
//! Listings, which walk pages and put many entries in order, are the engine in
//! [`super::listing`].

use vault_core::format::FileMeta;
use vault_core::proto::{
    EntryKind, NsRef, Rename, Request, Response, TrashItem, Usage, VersionInfo,
};

use super::{Files, FilesError, RemotePath, unexpected};

// Listings were asked for here before they had their own module.
pub use super::listing::{Detail, Listed, MAX_LIST_ENTRIES};

/// A live entry, decrypted.
#[derive(Clone, Debug)]
pub struct Entry {
    pub path: RemotePath,
    /// The encrypted path, as the server knows it.
    pub encrypted: String,
    pub id: i64,
    pub kind: EntryKind,
    /// The current version and its opened metadata (files only, and not in a listing of
    /// [`Detail::Names`]).
    pub current: Option<(VersionInfo, FileMeta)>,
    /// How many versions are kept (0 in a listing of [`Detail::Names`]).
    pub version_count: u64,
    pub revision: u64,
    pub updated_at: i64,
}

impl Entry {
    pub fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }

    /// The plaintext size (0 for directories).
    pub fn size(&self) -> u64 {
        self.current.as_ref().map_or(0, |(_, m)| m.size)
    }
}

/// One deletion in the trash, decrypted.
#[derive(Clone, Debug)]
pub struct TrashEntry {
    pub item: TrashItem,
    pub path: RemotePath,
}

/// A file's kept versions, newest first, each with its opened metadata.
#[derive(Clone, Debug)]
pub struct Versions {
    pub file_id: i64,
    pub current: u64,
    pub versions: Vec<(VersionInfo, FileMeta)>,
}

impl Files {
    /// The encrypted form of `path`.
    pub async fn encrypt(&self, path: &RemotePath) -> Result<String, FilesError> {
        self.keys_for(&path.ns).await?.encrypt_path(&path.segments)
    }

    /// The live entry at `path`, or `None`. The root is always a directory.
    pub async fn stat(&self, path: &RemotePath) -> Result<Option<Entry>, FilesError> {
        let encrypted = self.encrypt(path).await?;
        if path.is_root() {
            return Ok(Some(Entry {
                path: path.clone(),
                encrypted,
                id: 0,
                kind: EntryKind::Dir,
                current: None,
                version_count: 0,
                revision: 0,
                updated_at: 0,
            }));
        }
        let request = Request::Stat {
            ns: path.ns.clone(),
            path: encrypted,
        };
        match self.call(&request).await {
            Ok(Response::Entry(info)) => Ok(Some(self.decrypt_entry(&path.ns, info).await?)),
            Ok(other) => Err(unexpected("stat", &other)),
            Err(e) if e.api_code() == Some("not_found") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The entry at `path`, or an error saying it does not exist.
    pub async fn stat_existing(&self, path: &RemotePath) -> Result<Entry, FilesError> {
        self.stat(path)
            .await?
            .ok_or_else(|| FilesError::Usage(format!("{path}: no such file or directory")))
    }

    /// Creates `path` and any missing parents (an existing directory is fine); returns the
    /// directory's entry id (0 for the root).
    pub async fn mkdir(&self, path: &RemotePath) -> Result<i64, FilesError> {
        if path.is_root() {
            return Ok(0);
        }
        let request = Request::Mkdir {
            ns: path.ns.clone(),
            path: self.encrypt(path).await?,
        };
        match self.call(&request).await? {
            Response::Entry(info) => Ok(info.id),
            other => Err(unexpected("mkdir", &other)),
        }
    }

    /// Moves `path` to the trash; returns how many entries went.
    pub async fn remove(&self, path: &RemotePath, recursive: bool) -> Result<u64, FilesError> {
        let request = Request::Remove {
            ns: path.ns.clone(),
            path: self.encrypt(path).await?,
            recursive,
        };
        match self.call(&request).await {
            Ok(Response::Trashed { entries, .. }) => Ok(entries),
            Ok(other) => Err(unexpected("remove", &other)),
            Err(e) if e.api_code() == Some("not_found") => Err(FilesError::Usage(format!(
                "{path}: no such file or directory"
            ))),
            Err(e) => Err(e),
        }
    }

    /// Renames `from` (a file, or a directory with everything under it) to `to`: every
    /// descendant's name is encrypted again under its new parent. Returns how many
    /// entries moved.
    pub async fn rename(&self, from: &Entry, to: &RemotePath) -> Result<usize, FilesError> {
        if from.path.ns != to.ns {
            return Err(FilesError::Usage(
                "mv works inside one space; use get and put to copy between spaces".into(),
            ));
        }
        if from.path.contains(to) {
            return Err(FilesError::Usage(format!(
                "cannot move {} into itself ({to})",
                from.path
            )));
        }
        let keys = self.keys_for(&to.ns).await?;
        let mut renames = vec![Rename {
            from: from.encrypted.clone(),
            to: keys.encrypt_path(&to.segments)?,
        }];
        if from.is_dir() {
            let mut below = self.list(&from.path, true).await?;
            below.sort_by_key(|e| e.path.segments.len());
            let depth = from.path.segments.len();
            for entry in below {
                let moved = to.join_all(&entry.path.segments[depth..]);
                renames.push(Rename {
                    from: entry.encrypted,
                    to: keys.encrypt_path(&moved.segments)?,
                });
            }
        }
        let count = renames.len();
        let request = Request::Move {
            ns: to.ns.clone(),
            renames,
        };
        self.call(&request).await.map(|_| count)
    }

    /// The kept versions of the file at `path`.
    pub async fn versions(&self, path: &RemotePath) -> Result<Versions, FilesError> {
        let keys = self.keys_for(&path.ns).await?;
        let request = Request::Versions {
            ns: path.ns.clone(),
            path: keys.encrypt_path(&path.segments)?,
        };
        let (file_id, current, versions) = match self.call(&request).await {
            Ok(Response::Versions {
                file_id,
                current,
                versions,
            }) => (file_id, current, versions),
            Ok(other) => return Err(unexpected("versions", &other)),
            Err(e) if e.api_code() == Some("not_found") => {
                return Err(FilesError::Usage(format!("{path}: no such file")));
            }
            Err(e) => return Err(e),
        };
        let keys = self
            .keys_with(&path.ns, versions.iter().map(|v| v.generation))
            .await?;
        let mut opened = Vec::with_capacity(versions.len());
        for v in versions {
            let (_, meta) = keys.open_version(file_id, &v)?;
            opened.push((v, meta));
        }
        opened.sort_by_key(|v| std::cmp::Reverse(v.0.version));
        Ok(Versions {
            file_id,
            current,
            versions: opened,
        })
    }

    /// Makes `version` of the file at `path` current again.
    pub async fn restore(&self, path: &RemotePath, version: u64) -> Result<(), FilesError> {
        let request = Request::Restore {
            ns: path.ns.clone(),
            path: self.encrypt(path).await?,
            version,
        };
        self.call(&request).await.map(|_| ())
    }

    /// The trash of space `ns`, newest deletion first.
    pub async fn trash(&self, ns: &NsRef) -> Result<Vec<TrashEntry>, FilesError> {
        let keys = self.keys_for(ns).await?;
        let items = match self.call(&Request::TrashList { ns: ns.clone() }).await? {
            Response::Trash { items } => items,
            other => return Err(unexpected("trash_list", &other)),
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let segments = keys.decrypt_path(&item.path)?;
            out.push(TrashEntry {
                path: RemotePath {
                    ns: ns.clone(),
                    segments,
                    dir_hint: item.kind == EntryKind::Dir,
                },
                item,
            });
        }
        out.sort_by(|a, b| {
            (b.item.trashed_at, b.item.trash_id).cmp(&(a.item.trashed_at, a.item.trash_id))
        });
        Ok(out)
    }

    /// Restores a deletion from the trash.
    pub async fn trash_restore(&self, ns: &NsRef, trash_id: i64) -> Result<(), FilesError> {
        let request = Request::TrashRestore {
            ns: ns.clone(),
            trash_id,
        };
        self.call(&request).await.map(|_| ())
    }

    /// Empties the trash; returns (items, sealed bytes) removed.
    pub async fn trash_empty(&self, ns: &NsRef) -> Result<(u64, u64), FilesError> {
        match self.call(&Request::TrashEmpty { ns: ns.clone() }).await? {
            Response::TrashEmptied {
                items,
                sealed_bytes,
            } => Ok((items, sealed_bytes)),
            other => Err(unexpected("trash_empty", &other)),
        }
    }

    /// Space used and allowed in `ns`.
    pub async fn usage(&self, ns: &NsRef) -> Result<Usage, FilesError> {
        match self.call(&Request::Usage { ns: ns.clone() }).await? {
            Response::Usage(u) => Ok(u),
            other => Err(unexpected("usage", &other)),
        }
    }
}

//! The listing engine: [`Files::list`] and [`Files::list_or_file`] walk a remote folder
//! page by page, decrypt and check every entry, and put them in plaintext path order.
//!
//! A listing is asked for in two halves at once, split at the first letter `k` of the
//! encrypted names, of names only or with every file's version opened ([`Detail`]). Each
//! half decrypts every folder name once, opens long pages on two threads and fetches its
//! next page meanwhile, and keeps each page, sorted as it is opened, as a run. The runs are
//! put together once into a vector of exactly the room they need (a vector grown by
//! doubling was moved by `mremap`, a TLB shootdown across both cores each time), so that
//! the final sort only merges runs, most comparisons settled by 8 leading bytes of the
//! paths.

use std::collections::HashMap;
use std::sync::Arc;

use vault_core::proto::{EntryInfo, EntryKind, NsRef, Request, Response};

use super::keys::SpaceKeys;
use super::remote::Entry;
use super::{Files, FilesError, RemotePath, unexpected};

/// At most this many entries are read by one listing (about 100 pages of the server's).
pub const MAX_LIST_ENTRIES: usize = 1_000_000;

/// The answer to [`Files::list_or_file`].
#[derive(Debug)]
pub enum Listed {
    /// The entries of a directory, sorted by plaintext path.
    Dir(Vec<Entry>),
    /// The path named a file.
    File(Box<Entry>),
}

/// Where a listing of the folder whose encrypted path is `encrypted` is cut in two halves:
/// before its children whose names start with `k`. Encrypted names are base32 of AES-SIV
/// output, so their first letters are uniform over `2`–`7`, `a`–`z` (in byte order), and
/// the cut is no path (a segment is never one letter long) nor inside a subtree.
fn lane_split(encrypted: &str) -> String {
    if encrypted.is_empty() {
        "k".to_owned()
    } else {
        format!("{encrypted}/k")
    }
}

/// `entries` in plaintext path order. The order is found on indices, then the entries are
/// put in place cycle by cycle, each swapped into its slot once: an entry is a few hundred
/// bytes, and sorting the entries themselves moves each one about log2(n) times. The sort
/// is the standard library's stable one, which finds runs already in order and merges
/// them: a listing is sorted page by page while later pages are still on their way.
///
/// Most comparisons are settled by the first 8 bytes of the part of the paths the entries
/// do not share (see [`leading_bytes`]), kept next to the indices, without following the
/// pointers to the names.
fn sorted_by_path(mut entries: Vec<Entry>) -> Vec<Entry> {
    let shared = shared_depth(&entries);
    let tails = || entries.iter().map(|e| &e.path.segments[shared..]);
    // The shortcut orders paths like their segments only when no name holds a NUL.
    let nul = tails().flatten().any(|s| s.contains('\0'));
    // order[i] is (the leading bytes of, the index of) the entry that belongs at i.
    let mut order: Vec<(u64, usize)> = tails()
        .map(|tail| if nul { 0 } else { leading_bytes(tail) })
        .zip(0..)
        .collect();
    order.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| entries[a.1].path.segments.cmp(&entries[b.1].path.segments))
    });
    for start in 0..order.len() {
        let mut at = start;
        while order[at].1 != start {
            let from = order[at].1;
            entries.swap(at, from);
            order[at].1 = at;
            at = from;
        }
        order[at].1 = at;
    }
    entries
}

/// How many leading segments every entry's path has in common (the listed folder's).
fn shared_depth(entries: &[Entry]) -> usize {
    let Some((first, rest)) = entries.split_first() else {
        return 0;
    };
    let first = &first.path.segments;
    let mut depth = first.len();
    for entry in rest {
        let segments = &entry.path.segments;
        depth = depth.min(segments.len());
        while segments[..depth] != first[..depth] {
            depth -= 1;
        }
    }
    depth
}

/// The first 8 bytes of `segments` joined by NUL, zero-padded, as a big-endian number.
/// Without NULs in the names, two paths whose numbers differ sort as the numbers do: a NUL
/// sorts below every other byte, just as a path sorts before the longer paths it starts.
fn leading_bytes(segments: &[String]) -> u64 {
    let mut out = [0u8; 8];
    let joined = segments
        .iter()
        .enumerate()
        .flat_map(|(i, s)| (i > 0).then_some(0u8).into_iter().chain(s.bytes()));
    for (slot, byte) in out.iter_mut().zip(joined) {
        *slot = byte;
    }
    u64::from_be_bytes(out)
}

fn too_many_entries(dir: &RemotePath) -> FilesError {
    FilesError::Usage(format!(
        "{dir} has more than {MAX_LIST_ENTRIES} entries; list a subdirectory"
    ))
}

/// How much of each entry a listing brings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    /// Paths and kinds, what `ls` shows without `-l`: files come without their current
    /// version (`current` is `None`, `version_count` 0), so neither the server reads
    /// versions nor this side unwraps keys and opens metadata.
    Names,
    /// Everything, each file with its current version opened and checked.
    Full,
}

/// Opened entries as runs, each sorted by plaintext path.
type Runs = Vec<Vec<Entry>>;

/// The entries of `runs` in one vector, each moved once.
fn concat(runs: impl IntoIterator<Item = Vec<Entry>>) -> Vec<Entry> {
    let runs: Vec<Vec<Entry>> = runs.into_iter().collect();
    let mut out = Vec::with_capacity(runs.iter().map(Vec::len).sum());
    for run in runs {
        out.extend(run);
    }
    out
}

/// Listings at least this long are decrypted on two threads.
const PARALLEL_DECRYPT_MIN: usize = 256;

/// Decrypts entries the server returned, decrypting each parent folder's name once (not
/// once per child): `parents` maps encrypted folder paths to their plaintext segments.
#[derive(Clone)]
struct EntryOpener {
    keys: Arc<SpaceKeys>,
    ns: NsRef,
    detail: Detail,
    parents: HashMap<String, Vec<String>>,
}

/// The key generations of the versions in `infos`.
fn generations(infos: &[EntryInfo]) -> Vec<u32> {
    let mut out: Vec<u32> = infos
        .iter()
        .filter_map(|i| i.current.as_ref().map(|v| v.generation))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

impl EntryOpener {
    fn new(keys: Arc<SpaceKeys>, ns: &NsRef, detail: Detail) -> Self {
        EntryOpener {
            keys,
            ns: ns.clone(),
            detail,
            parents: HashMap::new(),
        }
    }

    /// Seeds the parent cache with a folder whose names are known already.
    fn knowing(mut self, encrypted: &str, segments: &[String]) -> Self {
        self.parents.insert(encrypted.to_owned(), segments.to_vec());
        self
    }

    fn segments(&mut self, encrypted: &str) -> Result<Vec<String>, FilesError> {
        let (parent, last) = encrypted.rsplit_once('/').unwrap_or(("", encrypted));
        let mut segments = match self.parents.get(parent) {
            Some(known) => known.clone(),
            None => {
                let known = self.keys.decrypt_path(parent)?;
                self.parents.insert(parent.to_owned(), known.clone());
                known
            }
        };
        segments.push(self.keys.decrypt_segment(parent, last)?);
        Ok(segments)
    }

    fn open(&mut self, info: EntryInfo) -> Result<Entry, FilesError> {
        let segments = self.segments(&info.path)?;
        let current = match (&info.kind, info.current) {
            // A server that predates listings of names sends the versions anyway.
            (EntryKind::File, _) if self.detail == Detail::Names => None,
            (EntryKind::File, Some(v)) => {
                let (_, meta) = self.keys.open_version(info.id, &v)?;
                Some((v, meta))
            }
            (EntryKind::File, None) => {
                return Err(FilesError::Integrity(format!(
                    "the server listed file {} without a version",
                    info.id
                )));
            }
            (EntryKind::Dir, _) => {
                self.parents.insert(info.path.clone(), segments.clone());
                None
            }
        };
        Ok(Entry {
            path: RemotePath {
                ns: self.ns.clone(),
                segments,
                dir_hint: info.kind == EntryKind::Dir,
            },
            encrypted: info.path,
            id: info.id,
            kind: info.kind,
            current,
            version_count: info.version_count,
            revision: info.revision,
            updated_at: info.updated_at,
        })
    }

    /// Opens `infos` and sorts them by plaintext path: a listing's pages arrive as sorted
    /// runs, which the final sort of the whole listing merges instead of sorting again.
    fn open_all(&mut self, infos: Vec<EntryInfo>) -> Result<Vec<Entry>, FilesError> {
        // Room for all at once: an entry is a few hundred bytes, and a vector grown by
        // doubling moves them again at every step.
        let mut opened = Vec::with_capacity(infos.len());
        for info in infos {
            opened.push(self.open(info)?);
        }
        Ok(sorted_by_path(opened))
    }

    /// Opens a page of entries, on two threads when it is long (each with its own cache),
    /// as one or two runs sorted by plaintext path.
    fn open_page(&mut self, mut infos: Vec<EntryInfo>) -> Result<Runs, FilesError> {
        if infos.len() < PARALLEL_DECRYPT_MIN {
            return Ok(vec![self.open_all(infos)?]);
        }
        let second = infos.split_off(infos.len() / 2);
        let mut other = self.clone();
        let (first, second) = std::thread::scope(|scope| {
            let helper = scope.spawn(move || other.open_all(second));
            let first = self.open_all(infos);
            let second = helper
                .join()
                .unwrap_or_else(|_| Err(FilesError::Usage("decrypting a listing failed".into())));
            (first, second)
        });
        Ok(vec![first?, second?])
    }
}

impl Files {
    /// `info` decrypted and checked, as a listing would open it.
    pub(super) async fn decrypt_entry(
        &self,
        ns: &NsRef,
        info: EntryInfo,
    ) -> Result<Entry, FilesError> {
        let keys = self
            .keys_with(ns, generations(std::slice::from_ref(&info)))
            .await?;
        EntryOpener::new(keys, ns, Detail::Full).open(info)
    }

    /// One page of a listing: the raw entries and the cursor of the next page.
    async fn list_page(
        &self,
        dir: &RemotePath,
        encrypted: &str,
        (recursive, detail): (bool, Detail),
        (after, before): (Option<String>, Option<String>),
    ) -> Result<(Vec<EntryInfo>, Option<String>), FilesError> {
        let request = Request::List {
            ns: dir.ns.clone(),
            dir: encrypted.to_owned(),
            recursive,
            after,
            before,
            names_only: detail == Detail::Names,
        };
        match self.call(&request).await {
            Ok(Response::Listing { entries, next }) => Ok((entries, next)),
            Ok(other) => Err(unexpected("list", &other)),
            Err(e) if e.api_code() == Some("not_found") => {
                Err(FilesError::Usage(format!("{dir}: no such directory")))
            }
            Err(e) => Err(e),
        }
    }

    /// The entries in directory `dir` (with `recursive`, everything under it), sorted by
    /// plaintext path.
    pub async fn list(&self, dir: &RemotePath, recursive: bool) -> Result<Vec<Entry>, FilesError> {
        match self.list_inner(dir, recursive, Detail::Full).await? {
            Listed::Dir(entries) => Ok(entries),
            Listed::File(_) => Err(FilesError::Usage(format!(
                "{dir} is a file, not a directory"
            ))),
        }
    }

    /// What `ls PATH` shows: the entries of directory `path`, or the file `path` itself, in
    /// one request per page (the server answers a file's listing with the file).
    pub async fn list_or_file(
        &self,
        path: &RemotePath,
        recursive: bool,
        detail: Detail,
    ) -> Result<Listed, FilesError> {
        self.list_inner(path, recursive, detail)
            .await
            .map_err(|e| match e {
                FilesError::Usage(m) if m.ends_with(": no such directory") => {
                    FilesError::Usage(format!("{path}: no such file or directory"))
                }
                other => other,
            })
    }

    async fn list_inner(
        &self,
        dir: &RemotePath,
        recursive: bool,
        detail: Detail,
    ) -> Result<Listed, FilesError> {
        let keys = self.keys_for(&dir.ns).await?;
        let encrypted = keys.encrypt_path(&dir.segments)?;
        let opener = EntryOpener::new(keys, &dir.ns, detail).knowing(&encrypted, &dir.segments);
        // Two halves of the listing at once, so that the server reads one while it sends
        // the other and this side decrypts both.
        let split = lane_split(&encrypted);
        let lanes = [(None, Some(split.clone())), (Some(split), None)];
        let [low, high] = lanes.map(|range| {
            let opener = opener.clone();
            self.list_range(dir, &encrypted, recursive, opener, range)
        });
        let (low, high) = tokio::try_join!(low, high)?;
        let out = concat(low.into_iter().chain(high));
        // `ls FILE`: the server answers with the file alone.
        if let [entry] = out.as_slice()
            && entry.path == *dir
            && !entry.is_dir()
        {
            return Ok(Listed::File(Box::new(entry.clone())));
        }
        for entry in &out {
            if !dir.contains(&entry.path) || entry.path == *dir {
                return Err(FilesError::Integrity(format!(
                    "the listing of {dir} contains {}, which is not under it",
                    entry.path
                )));
            }
        }
        if out.len() > MAX_LIST_ENTRIES {
            return Err(too_many_entries(dir));
        }
        Ok(Listed::Dir(sorted_by_path(out)))
    }

    /// The entries of a listing whose encrypted paths sort between the two bounds, page
    /// by page; the next page is asked for while this one is decrypted.
    async fn list_range(
        &self,
        dir: &RemotePath,
        encrypted: &str,
        recursive: bool,
        mut opener: EntryOpener,
        (after, before): (Option<String>, Option<String>),
    ) -> Result<Runs, FilesError> {
        let mut out = Runs::new();
        let what = (recursive, opener.detail);
        let page_after = |after| self.list_page(dir, encrypted, what, (after, before.clone()));
        let mut page = page_after(after).await?;
        loop {
            let (infos, next) = page;
            // Versions under a generation the cached keys lack: the key was rotated.
            opener.keys = self.keys_with(&dir.ns, generations(&infos)).await?;
            let (fetched, opened) = match next {
                Some(after) => {
                    let (fetched, opened) =
                        tokio::join!(page_after(Some(after)), async { opener.open_page(infos) });
                    (Some(fetched), opened)
                }
                None => (None, opener.open_page(infos)),
            };
            out.extend(opened?);
            if out.iter().map(Vec::len).sum::<usize>() > MAX_LIST_ENTRIES {
                return Err(too_many_entries(dir));
            }
            match fetched {
                Some(fetched) => page = fetched?,
                None => return Ok(out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vault_core::crypto::Key32;
    use vault_core::proto::VersionInfo;

    fn dir_info(keys: &SpaceKeys, id: i64, segments: &[&str]) -> EntryInfo {
        let segments: Vec<String> = segments.iter().map(|s| (*s).to_owned()).collect();
        EntryInfo {
            id,
            path: keys.encrypt_path(&segments).expect("encrypt"),
            kind: EntryKind::Dir,
            current: None,
            version_count: 0,
            revision: 1,
            updated_at: 0,
        }
    }

    /// A long recursive page (opened on two threads, parents from the cache) gives every
    /// entry its own plaintext path.
    #[test]
    fn a_long_page_opens_every_path() {
        let keys =
            Arc::new(SpaceKeys::personal("alice", &Key32::from_bytes([3; 32])).expect("keys"));
        let mut infos = Vec::new();
        for i in 0..PARALLEL_DECRYPT_MIN as i64 {
            let top = format!("d{i:03}");
            infos.push(dir_info(&keys, 2 * i, &["top", &top]));
            infos.push(dir_info(&keys, 2 * i + 1, &["top", &top, "sub"]));
        }
        infos.sort_by(|a, b| a.path.cmp(&b.path));
        let root = keys.encrypt_path(&["top".to_owned()]).expect("encrypt");
        let mut opener = EntryOpener::new(Arc::clone(&keys), &NsRef::Personal, Detail::Full)
            .knowing(&root, &["top".into()]);
        let opened = concat(opener.open_page(infos).expect("open"));
        assert_eq!(opened.len(), 2 * PARALLEL_DECRYPT_MIN);
        for entry in opened {
            let i = entry.id / 2;
            let mut want = vec!["top".to_owned(), format!("d{i:03}")];
            if entry.id % 2 == 1 {
                want.push("sub".into());
            }
            assert_eq!(entry.path.segments, want);
        }
    }

    /// Entries come back in plaintext path order, a folder before what is under it, each
    /// entry once.
    #[test]
    fn entries_are_sorted_by_plaintext_path() {
        let keys =
            Arc::new(SpaceKeys::personal("alice", &Key32::from_bytes([5; 32])).expect("keys"));
        // One cycle of five; then a fixed point and two swaps.
        let cases: [[&[&str]; 5]; 2] = [
            [&["b"], &["a", "z"], &["a"], &["c"], &["a", "b"]],
            [&["a"], &["c"], &["b"], &["e"], &["d"]],
        ];
        let wants = [["a", "a/b", "a/z", "b", "c"], ["a", "b", "c", "d", "e"]];
        for (paths, want) in cases.iter().zip(wants) {
            let infos = paths
                .iter()
                .enumerate()
                .map(|(id, p)| dir_info(&keys, id as i64, p))
                .collect();
            let mut opener = EntryOpener::new(Arc::clone(&keys), &NsRef::Personal, Detail::Full);
            let sorted = sorted_by_path(opener.open_all(infos).expect("open"));
            let got: Vec<String> = sorted.iter().map(|e| e.path.segments.join("/")).collect();
            assert_eq!(got, want);
        }
    }

    /// The shortcut on the leading bytes of the paths orders like the segments: names alike
    /// in their first 8 bytes, a folder before its contents and before a longer name that
    /// starts with its own, a shared first segment, and names with a NUL (which the name
    /// format refuses, so only a plain comparison can be trusted with them).
    #[test]
    fn the_sorting_shortcut_orders_like_the_segments() {
        let entry = |id: i64, path: &str| Entry {
            path: RemotePath {
                ns: NsRef::Personal,
                segments: path.split('/').map(str::to_owned).collect(),
                dir_hint: false,
            },
            encrypted: String::new(),
            id,
            kind: EntryKind::Dir,
            current: None,
            version_count: 0,
            revision: 0,
            updated_at: 0,
        };
        let cases: [&[&str]; 4] = [
            &["p/b", "p-x", "p/a", "p", "o", "p/a/d"],
            &[
                "photos-2026/b",
                "photos-2026-x",
                "photos-2026/a",
                "photos-2026",
                "photos-2025",
                "photos-2026/a/deeper-and-longer",
            ],
            &["top/b", "top/a", "top/ab", "top/a/b"],
            &["a\0b", "a/c", "a", "a\u{1}", "a/b"],
        ];
        for paths in cases {
            let entries: Vec<Entry> = (0..)
                .zip(paths.iter())
                .map(|(id, p)| entry(id, p))
                .collect();
            let mut want: Vec<Vec<String>> =
                entries.iter().map(|e| e.path.segments.clone()).collect();
            want.sort();
            let got: Vec<Vec<String>> = sorted_by_path(entries)
                .into_iter()
                .map(|e| e.path.segments)
                .collect();
            assert_eq!(got, want);
        }
        assert!(leading_bytes(&["a".into(), "b".into()]) < leading_bytes(&["a\u{1}".into()]));
    }

    /// The cut between the two halves of a listing: no path falls on it, a folder and
    /// everything under it fall on one side, and real names fall on both sides.
    #[test]
    fn the_listing_cut_keeps_subtrees_whole_and_splits_names() {
        let keys = SpaceKeys::personal("alice", &Key32::from_bytes([4; 32])).expect("keys");
        for folder in [Vec::new(), vec!["top".to_owned()]] {
            let encrypted = keys.encrypt_path(&folder).expect("encrypt");
            let cut = lane_split(&encrypted);
            let mut below = 0;
            for i in 0..64 {
                let mut path = folder.clone();
                path.push(format!("name {i}"));
                let child = keys.encrypt_path(&path).expect("encrypt");
                path.push("inner".into());
                let grandchild = keys.encrypt_path(&path).expect("encrypt");
                assert_ne!(child, cut);
                assert_eq!(
                    child < cut,
                    grandchild < cut,
                    "{child} and its subtree split"
                );
                below += usize::from(child < cut);
            }
            assert!(
                (8..=56).contains(&below),
                "{below} of 64 names below the cut"
            );
        }
    }

    /// A name moved under another folder does not open (its parent is associated data).
    #[test]
    fn a_name_moved_to_another_folder_is_refused() {
        let keys =
            Arc::new(SpaceKeys::personal("alice", &Key32::from_bytes([3; 32])).expect("keys"));
        let a = dir_info(&keys, 1, &["a", "x"]);
        let b = dir_info(&keys, 2, &["b"]);
        let (_, name) = a.path.rsplit_once('/').expect("two segments");
        let moved = EntryInfo {
            path: format!("{}/{name}", b.path),
            ..a
        };
        let err = EntryOpener::new(keys, &NsRef::Personal, Detail::Full)
            .open_page(vec![b, moved])
            .expect_err("moved name");
        assert!(err.to_string().contains("does not decrypt"), "{err}");
    }

    /// A listing of names leaves versions unopened, even from a server that sends them
    /// (one that predates listings of names); a full listing opens and checks them.
    #[test]
    fn a_listing_of_names_does_not_open_versions() {
        let keys =
            Arc::new(SpaceKeys::personal("alice", &Key32::from_bytes([3; 32])).expect("keys"));
        let file = EntryInfo {
            kind: EntryKind::File,
            current: Some(VersionInfo {
                version: 1,
                sealed_size: 100,
                wrapped_key: vec![7; 61].into(),
                sealed_meta: vec![8; 86].into(),
                generation: 0,
                created_at: 0,
                chunk_bytes: 0,
            }),
            version_count: 1,
            ..dir_info(&keys, 1, &["a.txt"])
        };
        let opened = EntryOpener::new(Arc::clone(&keys), &NsRef::Personal, Detail::Names)
            .open(file.clone())
            .expect("a name");
        assert_eq!(opened.path.segments, ["a.txt"]);
        assert!(!opened.is_dir());
        assert!(opened.current.is_none());
        let full = EntryOpener::new(keys, &NsRef::Personal, Detail::Full).open(file);
        assert!(matches!(full, Err(FilesError::Integrity(_))), "{full:?}");
    }
}

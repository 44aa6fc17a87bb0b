//! Fetching the file a message carries (`vault chat fetch ID [LOCAL]`). The message is
//! read again (`chat_get`) and goes through the same checks as every received message
//! ([`super::receive`]: trusted sender key, signature, opened); its body must carry a
//! [`FileRef`]. The sealed contents come from `chat_file_download` (the server finds the
//! file from the message; the caller names no path) and are opened chunk by chunk with the
//! key from the message ([`Opener`]); the size and the BLAKE3 of the plaintext must be the
//! ones the signed message states. The plaintext goes to a temporary file in the hidden
//! `.vault-part/` folder beside the target (as a download's part file does), is synced,
//! and renamed into place only when everything matched. An existing
//! file is never overwritten. A fetch cut off keeps the whole chunks written, with a
//! sidecar naming the message and file version; the next fetch of that message to the
//! same target hashes them again and asks only for the rest (`from_chunk`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use vault_core::format::chat::FileRef;
use vault_core::format::stream::SEALED_CHUNK_LEN;
use vault_core::format::{CHUNK_LEN, ContentHasher, StreamOpener, chunk_count, sealed_len};
use vault_core::proto::{Request, Response};
use zeroize::Zeroizing;

use super::receive::{Content, Reader, Received};
use crate::ClientError;
use crate::files::download::{PartPaths, Sidecar, hash_prefix, read_sidecar, write_sidecar_in};
use crate::files::progress::Progress;
use crate::files::{Files, FilesError, unexpected};

/// What a fetch wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    pub local: PathBuf,
    /// The file's name as the sender gave it.
    pub name: String,
    pub bytes: u64,
    /// Who sent it.
    pub from: String,
    /// Plaintext bytes an interrupted fetch had written already (not fetched again).
    pub resumed_at: u64,
}

/// Opens a file's sealed chunks with the key a message carries, and checks the whole
/// against the size and BLAKE3 the message states.
#[derive(Debug)]
pub struct Opener {
    opener: StreamOpener,
    hasher: ContentHasher,
    size: u64,
    blake3: [u8; 32],
    sealed: u64,
    chunks: u64,
    next: u64,
    opened: u64,
}

impl Opener {
    pub fn new(file: &FileRef) -> Result<Self, FilesError> {
        let key = file.file_key()?;
        let blake3: [u8; 32] = file.blake3.as_slice().try_into().map_err(|_| {
            FilesError::Integrity("the file's BLAKE3 in the message is malformed".into())
        })?;
        Ok(Opener {
            opener: StreamOpener::new(&key),
            hasher: ContentHasher::new(),
            size: file.size,
            blake3,
            sealed: sealed_len(file.size),
            chunks: chunk_count(file.size),
            next: 0,
            opened: 0,
        })
    }

    /// The sealed length of the next chunk, or `None` after the last.
    pub fn next_len(&self) -> Option<usize> {
        if self.next >= self.chunks {
            return None;
        }
        let start = self.next.saturating_mul(SEALED_CHUNK_LEN as u64);
        Some(
            self.sealed
                .saturating_sub(start)
                .min(SEALED_CHUNK_LEN as u64) as usize,
        )
    }

    /// Continues after the first `start` chunks, whose plaintext `prefix` holds (a part
    /// file an interrupted fetch kept): they are hashed, not fetched again.
    pub fn resume(&mut self, start: u64, prefix: &mut std::fs::File) -> std::io::Result<()> {
        let keep = start * CHUNK_LEN as u64;
        hash_prefix(prefix, keep, &mut self.hasher)?;
        self.next = start;
        self.opened = keep;
        Ok(())
    }

    /// Opens the next chunk.
    pub fn open(&mut self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, FilesError> {
        let index = self.next;
        let last = index + 1 == self.chunks;
        let plain = self
            .opener
            .open_chunk(index, sealed, last)
            .map_err(|e| FilesError::Integrity(format!("chunk {index} of the file: {e}")))?;
        self.hasher.update(&plain);
        self.opened += plain.len() as u64;
        self.next += 1;
        Ok(plain)
    }

    /// Checks that every chunk was opened and that the plaintext has the size and BLAKE3
    /// the message states.
    pub fn finish(self) -> Result<(), FilesError> {
        self.opener
            .finish()
            .map_err(|e| FilesError::Integrity(format!("the file is incomplete: {e}")))?;
        if self.opened != self.size {
            return Err(FilesError::Integrity(format!(
                "the file has {} bytes, the message says {}",
                self.opened, self.size
            )));
        }
        if self.hasher.finalize() != self.blake3 {
            return Err(FilesError::Integrity(
                "the file's contents do not match the BLAKE3 hash in the message".into(),
            ));
        }
        Ok(())
    }
}

/// The local name a fetched file gets by default: the sender's name for it, which must be
/// a plain file name (a signed message can still come from a careless or hostile sender).
pub fn default_name(name: &str) -> Result<PathBuf, FilesError> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !name.chars().any(char::is_control);
    if !plain {
        return Err(FilesError::Usage(format!(
            "the file's name {name:?} is not a plain file name; give a LOCAL path to save it"
        )));
    }
    Ok(PathBuf::from(name))
}

fn refuse_existing(target: &Path) -> Result<(), FilesError> {
    if std::fs::symlink_metadata(target).is_ok() {
        return Err(FilesError::Usage(format!(
            "{} exists; name another path",
            target.display()
        )));
    }
    Ok(())
}

/// Message `id`, read again and checked as every received message is.
async fn message(files: &Files, id: i64) -> Result<Received, FilesError> {
    let found = match files.call(&Request::ChatGet { id }).await? {
        Response::ChatMessages { messages } => messages,
        other => return Err(unexpected("chat_get", &other)),
    };
    let [message] = found.as_slice() else {
        return Err(FilesError::Integrity(format!(
            "the server answered with {} messages for message {id}",
            found.len()
        )));
    };
    if message.id != id {
        return Err(FilesError::Integrity(format!(
            "asked for message {id}, the server sent message {}",
            message.id
        )));
    }
    Ok(Reader::new(files)?.read(message).await)
}

/// Fetches the file message `id` carries into `local` (default: the file's name in the
/// current directory).
pub async fn fetch(
    files: &Files,
    id: i64,
    local: Option<&Path>,
    progress: &dyn Progress,
) -> Result<Fetched, FilesError> {
    if let Some(local) = local {
        refuse_existing(local)?;
    }
    let received = message(files, id).await?;
    if let Content::Refused(reason) = &received.content {
        return Err(FilesError::Integrity(format!(
            "message {id} from {} was refused: {reason}",
            received.from
        )));
    }
    let Some(file) = &received.file else {
        return Err(FilesError::Usage(format!("message {id} carries no file")));
    };
    let target = match local {
        Some(local) => local.to_path_buf(),
        None => default_name(&file.name)?,
    };
    refuse_existing(&target)?;
    let mut opener = Opener::new(file)?;
    let paths = PartPaths::of(&target)?;
    paths.prepare()?;
    let part = paths.part.clone();
    // What an interrupted fetch of this message's file kept: its whole chunks.
    let sidecar = Sidecar {
        remote: format!("chat message {id}"),
        file_id: file.file_id,
        version: file.version,
        size: file.size,
        chunked: false,
    };
    let pinned = read_sidecar(&paths.side).is_some_and(|s| s == sidecar) && part.is_file();
    let start = if pinned {
        let have = std::fs::metadata(&part).map_or(0, |m| m.len());
        (have / CHUNK_LEN as u64).min(chunk_count(file.size) - 1)
    } else {
        0
    };
    let request = Request::ChatFileDownload {
        message_id: id,
        from_chunk: start,
    };
    let conn = files.conn();
    let (response, mut stream) = conn.call_with_download(&request).await?;
    match response {
        Response::Download {
            file_id,
            version,
            offset,
        } => {
            if file_id != file.file_id
                || version.version != file.version
                || version.sealed_size != sealed_len(file.size)
                || Some(offset) != start.checked_mul(SEALED_CHUNK_LEN as u64)
            {
                return Err(FilesError::Integrity(format!(
                    "the server sent version {} of file {file_id} ({} sealed bytes from byte \
                     {offset}), but the message names version {} of file {} ({} bytes) from \
                     chunk {start}",
                    version.version, version.sealed_size, file.version, file.file_id, file.size
                )));
            }
        }
        other => return Err(unexpected("chat_file_download", &other)),
    }

    let mut out = if pinned {
        let mut out = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&part)
            .map_err(|e| FilesError::io("write", &part, e))?;
        out.set_len(start * CHUNK_LEN as u64)
            .and_then(|()| opener.resume(start, &mut out))
            .map_err(|e| FilesError::io("read", &part, e))?;
        out
    } else {
        let _ = std::fs::remove_file(&part);
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&part)
            .map_err(|e| FilesError::io("write", &part, e))?;
        write_sidecar_in(&paths, &sidecar)?;
        out
    };
    progress.begin(1, file.size);
    progress.advance(start * CHUNK_LEN as u64);
    // Whether the transfer was cut off (what arrived stays for the next run) rather than
    // refused by a check (nothing stays).
    let mut cut_off = false;
    let written = async {
        let mut buf = vec![0u8; SEALED_CHUNK_LEN];
        while let Some(len) = opener.next_len() {
            let got = stream.read_full(&mut buf[..len]).await.inspect_err(|_| {
                cut_off = true;
            })?;
            if got < len {
                cut_off = true;
                return Err(if conn.is_closed() {
                    ClientError::Closed("the download was cut off".into()).into()
                } else {
                    FilesError::Integrity(
                        "the server sent only part of the file; run the command again".into(),
                    )
                });
            }
            let plain = opener.open(&buf[..len])?;
            out.write_all(&plain)
                .map_err(|e| FilesError::io("write", &part, e))?;
            progress.advance(plain.len() as u64);
        }
        stream.expect_end().await?;
        opener.finish()?;
        out.sync_all()
            .map_err(|e| FilesError::io("write", &part, e))
    }
    .await;
    if let Err(e) = written {
        if cut_off || e.is_connection() {
            // The whole chunks written so far are for the next run to continue from.
            let _ = out.sync_all();
            return Err(e);
        }
        drop(out);
        paths.discard();
        return Err(match e {
            FilesError::Integrity(why) => FilesError::Integrity(format!(
                "{why}; nothing was written to {}",
                target.display()
            )),
            other => other,
        });
    }
    drop(out);
    progress.file_done();
    if let Err(e) = refuse_existing(&target) {
        paths.discard();
        return Err(e);
    }
    std::fs::rename(&part, &target).map_err(|e| FilesError::io("rename into place", &target, e))?;
    paths.tidy();
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(Fetched {
        local: target,
        name: file.name.clone(),
        bytes: file.size,
        from: received.from,
        resumed_at: start * CHUNK_LEN as u64,
    })
}

#[cfg(test)]
mod tests {
    use vault_core::crypto::Key32;
    use vault_core::format::{content_hash, seal_all};
    use vault_core::proto::{ByteBuf, SecretBytes};

    use super::*;

    const KEY: [u8; 32] = [9; 32];

    fn file_ref(data: &[u8]) -> FileRef {
        FileRef {
            name: "data.bin".into(),
            size: data.len() as u64,
            file_id: 1,
            version: 1,
            key: SecretBytes::new(KEY.to_vec()),
            blake3: ByteBuf::from(content_hash(data).to_vec()),
        }
    }

    /// Opens every chunk of `sealed` as `fetch` does; the plaintext, or the first error.
    fn open(file: &FileRef, sealed: &[Vec<u8>]) -> Result<Vec<u8>, FilesError> {
        let mut opener = Opener::new(file)?;
        let mut out = Vec::new();
        let mut chunks = sealed.iter();
        while let Some(len) = opener.next_len() {
            let chunk = chunks.next().expect("a chunk");
            assert_eq!(chunk.len(), len, "the sealed length of the chunk");
            out.extend_from_slice(&opener.open(chunk)?);
        }
        opener.finish()?;
        Ok(out)
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn a_file_opens_with_the_key_and_hash_of_its_message() {
        let key = Key32::from_bytes(KEY);
        for len in [0, 5, vault_core::format::CHUNK_LEN + 3] {
            let plain = data(len);
            let sealed = seal_all(&key, &plain).expect("seal");
            assert_eq!(open(&file_ref(&plain), &sealed).expect("open"), plain);
        }
    }

    #[test]
    fn a_file_whose_blake3_or_size_differs_is_refused() {
        let key = Key32::from_bytes(KEY);
        let plain = data(100);
        let sealed = seal_all(&key, &plain).expect("seal");
        let mut other_hash = file_ref(&plain);
        other_hash.blake3 = ByteBuf::from(content_hash(b"something else").to_vec());
        let e = open(&other_hash, &sealed).expect_err("another hash");
        assert!(e.to_string().contains("do not match the BLAKE3"), "{e}");
        // Another file sealed under the same key (a swapped download): its length, or else
        // its hash, gives it away.
        let swapped = seal_all(&key, &data(99)).expect("seal");
        let mut opener = Opener::new(&file_ref(&plain)).expect("opener");
        assert_eq!(opener.next_len(), Some(116));
        opener.open(&swapped[0]).expect("an authentic chunk");
        let e = opener.finish().expect_err("a shorter file");
        assert!(
            e.to_string().contains("has 99 bytes, the message says 100"),
            "{e}"
        );
        let mut shuffled = plain.clone();
        shuffled.swap(0, 1);
        let e = open(&file_ref(&plain), &seal_all(&key, &shuffled).expect("seal"))
            .expect_err("same length, other bytes");
        assert!(e.to_string().contains("BLAKE3"), "{e}");
        let mut wrong_key = file_ref(&plain);
        wrong_key.key = SecretBytes::new(vec![8; 32]);
        assert!(open(&wrong_key, &sealed).is_err());
        let mut bad_hash = file_ref(&plain);
        bad_hash.blake3 = ByteBuf::from(vec![0; 31]);
        assert!(Opener::new(&bad_hash).is_err());
    }

    #[test]
    fn only_a_plain_name_is_used_as_the_default_path() {
        assert_eq!(
            default_name("report.pdf").expect("plain"),
            Path::new("report.pdf")
        );
        for bad in ["", ".", "..", "../x", "a/b", "/etc/passwd", "a\nb", "a\\b"] {
            let e = default_name(bad).expect_err(bad);
            assert!(e.to_string().contains("give a LOCAL path"), "{bad}: {e}");
        }
        let dir = tempfile::tempdir().expect("tmp");
        let there = dir.path().join("x");
        std::fs::write(&there, b"mine").expect("write");
        let e = refuse_existing(&there).expect_err("exists");
        assert!(e.to_string().ends_with("exists; name another path"), "{e}");
        refuse_existing(&dir.path().join("y")).expect("free");
    }
}

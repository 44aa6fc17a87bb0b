//! Sending a file with a message (`vault chat send TARGET [TEXT] --file PATH`). The file is
//! uploaded into the sender's own personal space at `/.vault-chat/<16 hex>/<file name>` with
//! the normal upload code (sealed under a fresh file key like any other file), then looked
//! at again to learn its id, version and wrapped key. The message's sealed, signed body
//! carries a [`FileRef`] (name, size, file id, version, the file key, the BLAKE3 of the
//! plaintext); its [`Attachment`] tells the server which file of the sender's space the
//! message's readers may download. The server sees the encrypted path, the sealed bytes and
//! their size, never the name, the key or the contents.

use std::path::Path;

use vault_core::crypto::random_bytes;
use vault_core::format::chat::{FileRef, MessageBody};
use vault_core::proto::chat::ChatTarget;
use vault_core::proto::{Attachment, ByteBuf, NsRef, SecretBytes};

use super::send::{Sent, check_length, send_body};
use crate::files::progress::Progress;
use crate::files::upload::upload_file;
use crate::files::{Files, FilesError, RemotePath};

/// The folder of the personal space that holds sent files.
pub const SENT_FILES_DIR: &str = ".vault-chat";

/// Where a file named `name` is uploaded to be sent: a fresh folder of its own under
/// [`SENT_FILES_DIR`], so that sending the same name twice keeps both.
pub fn sent_file_path(name: &str) -> Result<RemotePath, FilesError> {
    let random = random_bytes::<8>().map_err(vault_core::format::FormatError::from)?;
    let folder = hex::encode(random);
    RemotePath::parse(&format!("/{SENT_FILES_DIR}/{folder}/{name}"))
}

/// The name a local file is sent under: its file name, which must be UTF-8.
pub fn file_name(local: &Path) -> Result<String, FilesError> {
    local
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| {
            FilesError::Usage(format!(
                "{} has no file name that is UTF-8 text; rename it to send it",
                local.display()
            ))
        })
}

/// Uploads `local` into the caller's space and sends a message with `text` (which may be
/// empty) and the file to `target`.
pub async fn send_file(
    files: &Files,
    target: &ChatTarget,
    text: &str,
    local: &Path,
    progress: &dyn Progress,
) -> Result<Sent, FilesError> {
    check_length(text)?;
    let name = file_name(local)?;
    let remote = sent_file_path(&name)?;
    let uploaded = upload_file(files, local, &remote, progress, None).await?;
    progress.file_done();
    let entry = files.stat_existing(&remote).await?;
    let Some((version, _)) = entry
        .current
        .as_ref()
        .filter(|(v, _)| entry.id == uploaded.file_id && v.version == uploaded.version)
    else {
        return Err(FilesError::Integrity(format!(
            "{remote}: the server does not show version {} of file {} just uploaded",
            uploaded.version, uploaded.file_id
        )));
    };
    let keys = files.keys_for(&NsRef::Personal).await?;
    let (key, meta) = keys.open_version(entry.id, version)?;
    let body = MessageBody {
        text: text.to_owned(),
        file: Some(FileRef {
            name,
            size: meta.size,
            file_id: entry.id,
            version: version.version,
            key: SecretBytes::new(key.dangerously_leak_secret().to_vec()),
            blake3: ByteBuf::from(meta.blake3.to_vec()),
        }),
    };
    let attachment = Attachment {
        path: entry.encrypted.clone(),
        version: version.version,
    };
    send_body(files, target, &body, Some(&attachment)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sent_file_gets_a_folder_of_its_own() {
        let a = sent_file_path("report.pdf").expect("path");
        let b = sent_file_path("report.pdf").expect("path");
        assert_eq!(a.ns, NsRef::Personal);
        assert_eq!(a.segments.len(), 3);
        assert_eq!(a.segments[0], SENT_FILES_DIR);
        assert_eq!(a.segments[1].len(), 16);
        assert!(a.segments[1].chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a.segments[2], "report.pdf");
        assert_ne!(a.segments[1], b.segments[1]);
        assert_eq!(
            file_name(Path::new("/tmp/x/a b.txt")).expect("name"),
            "a b.txt"
        );
        assert!(file_name(Path::new("/")).is_err());
    }
}

//! Files sent with messages (`vault chat send --file`). The sender's client uploads the
//! file into the sender's own personal space like any other file, then sends a message
//! whose [`Attachment`] names its encrypted path and version; the file key travels inside
//! the sealed body, so the server still sees only ciphertext.
//!
//! - [`attach`]: in `chat_send`'s transaction, the path must be a live file of the
//!   sender's personal space with that version kept; the message's `chat_attachments` row
//!   then names the entry and version.
//! - [`prepare`]: `chat_file_download`, for a caller with a delivery of the message (its
//!   sender or a reader): that version of that entry while the sender keeps it, streamed
//!   like `download` from the blob the database names.

use vault_proto::proto::{ApiError, Attachment, Response};

use crate::db::chat as rows;
use crate::db::files::{entries, namespaces, versions};
use crate::db::{DbConn, DbResult};
use crate::error::Failure;
use crate::files::download::{self, Body};
use crate::net::connection::SessionCtx;
use crate::state::ServerState;

fn not_in_your_space() -> ApiError {
    ApiError::bad_request("the attached file is not in your space: upload it first")
}

fn removed() -> ApiError {
    ApiError::not_found("the sender has removed this file")
}

/// The entry id and version `attachment` names in `user_id`'s personal space, if that is
/// a live file with that version kept.
fn find(
    conn: &mut DbConn,
    user_id: i64,
    attachment: &Attachment,
) -> DbResult<Option<(i64, versions::Version)>> {
    let Some(ns) = namespaces::personal(conn, user_id)? else {
        return Ok(None);
    };
    let Some(entry) = entries::visible_at(conn, ns.id, &attachment.path)? else {
        return Ok(None);
    };
    let Ok(version) = i64::try_from(attachment.version) else {
        return Ok(None);
    };
    if entry.is_dir() {
        return Ok(None);
    }
    Ok(versions::get(conn, entry.id, version)?.map(|row| (entry.id, row)))
}

/// Records that message `message_id` of user `sender_id` carries `attachment` (call it in
/// the transaction that stores the message: a refusal leaves nothing behind).
pub fn attach(
    conn: &mut DbConn,
    sender_id: i64,
    message_id: i64,
    attachment: &Attachment,
) -> Result<(), Failure> {
    let (entry_id, row) = find(conn, sender_id, attachment)?.ok_or_else(not_in_your_space)?;
    rows::insert_attachment(conn, message_id, entry_id, row.version)?;
    Ok(())
}

/// Serves `chat_file_download`: the header and the body of the file message `message_id`
/// carries, from chunk `from_chunk`.
pub async fn prepare(
    state: &ServerState,
    session: &SessionCtx,
    message_id: i64,
    from_chunk: u64,
) -> Result<(Response, Body), ApiError> {
    let me = session.user_id;
    let (entry_id, row) = state
        .db
        .run(move |c| {
            if !rows::has_delivery(c, me, message_id)? {
                return Err(
                    ApiError::not_found(format!("you have no message {message_id}")).into(),
                );
            }
            // A file sent to a group is for its members: one who left or was removed
            // reads nothing more of the group's from the server.
            if let Some(group_id) = rows::group_of_message(c, message_id)?
                && crate::db::groups::member(c, group_id, me)?.is_none()
            {
                return Err(ApiError::forbidden(
                    "this file was sent to a group you are no longer a member of",
                )
                .into());
            }
            let (entry_id, version) = rows::attachment(c, message_id)?.ok_or_else(|| {
                ApiError::not_found(format!("message {message_id} carries no file"))
            })?;
            let entry = entries::by_id(c, entry_id)?
                .filter(|e| e.trash_id.is_none() && !e.is_dir())
                .ok_or_else(removed)?;
            let row = versions::get(c, entry.id, version)?.ok_or_else(removed)?;
            Ok::<_, Failure>((entry.id, row))
        })
        .await?;
    download::open(state, entry_id, &row, from_chunk).await
}

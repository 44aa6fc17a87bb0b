//! Chat (docs/PROTOCOL.md §6.4, docs/FORMAT.md §9): profiles, contacts, end-to-end sealed messages
//! with offline delivery, history with read state, the inbox, and the `subscribe` event stream. The
//! server decides who may send what to whom and stores each message as the sender's client sealed
//! it; it never opens or verifies one (it cannot).
//!
//! - [`contacts`]: `profile_set`, `contact_add|accept|reject|remove|list`;
//! - [`send`]: `chat_send`, its checks (sender, clock, sizes, keys, contact or membership)
//!   and storing the message with one delivery row per reader;
//! - [`history`]: `chat_history` (marks what it returns read), `chat_get` and `chat_inbox`;
//! - [`files`]: the file a message carries (`chat_send`'s attachment check and
//!   `chat_file_download`);
//! - [`subscribe`]: the event stream: undelivered messages first, then new ones and other
//!   events as they come;
//! - [`hub`]: who is subscribed on this instance, wake-ups and queued events;
//! - [`presence`]: who is online on any instance, and the announcements to mutual contacts;
//! - [`limit`]: the per-user message rate limit.
//!
//! Contact and profile changes are not audited: they are not security changes.

pub mod contacts;
pub mod files;
pub mod history;
pub mod hub;
pub mod limit;
pub mod presence;
pub mod send;
pub mod subscribe;

use vault_proto::proto::{ApiError, ChatMessage, Request, Response, SealedMessage};

use crate::config::ChatConfig;
use crate::db::chat::Delivered;
use crate::net::connection::SessionCtx;
use crate::state::ServerState;

/// The chat state of one server instance.
#[derive(Debug)]
pub struct Chat {
    pub hub: hub::Hub,
    pub limit: limit::MessageLimit,
}

impl Chat {
    pub fn new(config: &ChatConfig) -> Self {
        Chat {
            hub: hub::Hub::default(),
            limit: limit::MessageLimit::new(config.messages_per_minute),
        }
    }
}

/// Serves a one-frame chat request for `session` (already checked).
pub async fn dispatch(
    state: &ServerState,
    session: &SessionCtx,
    request: Request,
) -> Result<Response, ApiError> {
    match request {
        Request::ProfileSet { display_name } => {
            contacts::profile_set(state, session, display_name).await
        }
        Request::ContactAdd { username } => contacts::add(state, session, &username).await,
        Request::ContactAccept { username } => contacts::accept(state, session, &username).await,
        Request::ContactReject { username } => contacts::reject(state, session, &username).await,
        Request::ContactRemove { username } => contacts::remove(state, session, &username).await,
        Request::ContactList => contacts::list(state, session, None).await,
        Request::ContactGet { username } => contacts::list(state, session, Some(username)).await,
        Request::ChatSend { message } => send::send(state, session, message).await,
        Request::ChatHistory {
            target,
            limit,
            before,
        } => history::history(state, session, target, limit, before).await,
        Request::ChatInbox => history::inbox(state, session).await,
        Request::ChatGet { id } => history::get(state, session, id).await,
        Request::ChatFileDownload { .. } => Err(ApiError::bad_request(
            "chat_file_download carries bytes on its stream and cannot be sent here",
        )),
        Request::Subscribe => Err(ApiError::bad_request(
            "subscribe turns its own stream into an event stream; open a new stream for it",
        )),
        _ => Err(ApiError::bad_request("not a chat request")),
    }
}

/// A message as stored: the CBOR of the [`SealedMessage`] as it came.
fn encode_body(message: &SealedMessage) -> Result<Vec<u8>, ApiError> {
    let mut frame = vault_proto::proto::encode_frame(message)
        .map_err(|e| crate::error::internal("a chat message could not be encoded", e))?;
    Ok(frame.split_off(4))
}

/// A stored message as the server hands it out.
fn chat_message(row: Delivered) -> Result<ChatMessage, ApiError> {
    let message: SealedMessage = vault_proto::proto::decode_body(&row.body)
        .map_err(|e| crate::error::internal("a stored chat message could not be decoded", e))?;
    Ok(ChatMessage {
        id: row.id,
        received_at_ms: row.received_at_ms,
        message,
        sender_key: row.sender_key.into(),
    })
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn no_such_user(name: &str) -> ApiError {
    ApiError::not_found(format!("there is no user named {name}"))
}

#[cfg(test)]
mod tests;

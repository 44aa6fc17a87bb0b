//! `chat_history`, `chat_get` and `chat_inbox`, all over the caller's own delivery rows: a reader sees
//! exactly the messages that were delivered to them (a direct conversation stays readable
//! after the contact ends; a group's only while they are a member), and read state is
//! theirs alone.

use vault_proto::proto::chat::MAX_HISTORY_PAGE;
use vault_proto::proto::{ApiError, ChatTarget, Conversation, Response, SealedMessage};

use super::{chat_message, no_such_user};
use crate::db::chat::{self as rows, ConversationKey, InboxRow};
use crate::db::{DbConn, groups, users};
use crate::error::Failure;
use crate::groups::access;
use crate::net::connection::SessionCtx;
use crate::state::ServerState;

pub async fn history(
    state: &ServerState,
    session: &SessionCtx,
    target: ChatTarget,
    limit: u32,
    before: Option<i64>,
) -> Result<Response, ApiError> {
    if limit == 0 || limit > MAX_HISTORY_PAGE {
        return Err(ApiError::bad_request(format!(
            "a page of history has 1 to {MAX_HISTORY_PAGE} messages, not {limit}"
        )));
    }
    let me = session.user_id;
    let found = state
        .db
        .run(move |c| {
            let conversation = match &target {
                ChatTarget::User { username } => {
                    let name = access::username(username)?;
                    let other = users::by_name(c, &name)?.ok_or_else(|| no_such_user(&name))?;
                    rows::conversation_with_user(other.id)
                }
                ChatTarget::Group { name } => {
                    let a = access::member(c, name, me, false)?;
                    rows::conversation_of_group(a.group.id)
                }
            };
            let found = rows::history(c, me, &conversation, before, i64::from(limit))?;
            let unread: Vec<i64> = found.iter().map(|r| r.id).collect();
            rows::mark_read(c, me, &unread)?;
            Ok::<_, Failure>(found)
        })
        .await?;
    let messages = found
        .into_iter()
        .map(chat_message)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Response::ChatMessages { messages })
}

/// Serves `chat_get`: one message the caller has a delivery of (it does not mark it read).
pub async fn get(state: &ServerState, session: &SessionCtx, id: i64) -> Result<Response, ApiError> {
    let me = session.user_id;
    let found = state
        .db
        .run(move |c| rows::deliveries_by_id(c, me, &[id]))
        .await?;
    let Some(row) = found.into_iter().next() else {
        return Err(ApiError::not_found(format!(
            "you have no message {id}; `vault chat history` lists yours"
        )));
    };
    Ok(Response::ChatMessages {
        messages: vec![chat_message(row)?],
    })
}

pub async fn inbox(state: &ServerState, session: &SessionCtx) -> Result<Response, ApiError> {
    let me = session.user_id;
    let conversations = state
        .db
        .run(move |c| {
            let mut out = Vec::new();
            for row in rows::inbox(c, me)? {
                if let Some(target) = target_of(c, me, &row)? {
                    out.push(Conversation {
                        target,
                        last_id: row.last_id,
                        last_received_at_ms: row.last_received_at_ms,
                        unread: row.unread.max(0) as u64,
                    });
                }
            }
            Ok::<_, Failure>(out)
        })
        .await?;
    Ok(Response::Inbox { conversations })
}

/// The target of an inbox row: the other user's or the group's current name. A direct
/// conversation with a deleted account is named from its newest message; a damaged row or
/// a deleted group's is left out.
fn target_of(conn: &mut DbConn, me: i64, row: &InboxRow) -> Result<Option<ChatTarget>, Failure> {
    match ConversationKey::parse(&row.conversation) {
        Some(ConversationKey::User(id)) => {
            if let Some(user) = users::by_id(conn, id)? {
                return Ok(Some(ChatTarget::User {
                    username: user.username,
                }));
            }
            let newest = rows::history(conn, me, &row.conversation, None, 1)?;
            let Some(newest) = newest.into_iter().next() else {
                return Ok(None);
            };
            let msg: SealedMessage = vault_proto::proto::decode_body(&newest.body)
                .map_err(|e| crate::error::internal("a stored chat message is damaged", e))?;
            let me_name = users::by_id(conn, me)?.map(|u| u.username);
            let other = match msg.target {
                ChatTarget::User { username } if Some(&msg.sender) == me_name.as_ref() => username,
                _ => msg.sender,
            };
            Ok(Some(ChatTarget::User { username: other }))
        }
        Some(ConversationKey::Group(id)) => {
            Ok(groups::by_id(conn, id)?.map(|g| ChatTarget::Group { name: g.name }))
        }
        None => {
            tracing::warn!(conversation = %row.conversation, "damaged chat_deliveries.conversation");
            Ok(None)
        }
    }
}

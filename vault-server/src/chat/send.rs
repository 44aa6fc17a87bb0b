//! `chat_send`: the checks a message must pass, and storing it with one delivery row per
//! reader. The checks that need no database come first ([`check`]): the sender named in
//! the message is the session's user, the sender's clock is within ±10 minutes of the
//! server's, the sizes are within limits, a direct message carries exactly its two wrapped
//! keys and a group message none. Then, in one transaction: a direct message's recipient
//! exists and is a mutual contact; a group message's sender is a member, and the message
//! names the group's id and the key generation in force; a message that carries a file
//! names a live file of the sender's personal space ([`files::attach`]). A refused message
//! leaves nothing behind. Each reader's subscriptions are woken once the transaction has committed.

use std::time::Instant;

use vault_proto::proto::{
    ApiError, Attachment, ChatTarget, ErrorCode, Response, SealedMessage, names,
};

use super::{files, no_such_user, now_ms};
use crate::config::{CHAT_SEAL_OVERHEAD, ChatConfig};
use crate::db::chat::{self as rows, KIND_GROUP, KIND_USER, NewDelivery, NewMessage};
use crate::db::{self, DbConn, groups, users};
use crate::error::Failure;
use crate::groups::access;
use crate::net::connection::SessionCtx;
use crate::state::ServerState;

/// How far the sender's clock may be from the server's.
pub const MAX_CLOCK_SKEW_MS: i64 = 10 * 60 * 1000;
/// The largest signature and wrapped key the server stores (RSA-3072 needs 384 bytes).
pub const MAX_KEY_BYTES: usize = 1024;

/// Whom a message that passed [`check`] is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checked {
    User {
        username: String,
    },
    Group {
        name: String,
        id: i64,
        generation: u32,
    },
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

/// The checks of a message that need no database, for `session` at server time `now_ms`.
pub fn check(
    config: &ChatConfig,
    session: &SessionCtx,
    msg: &SealedMessage,
    now_ms: i64,
) -> Result<Checked, ApiError> {
    if msg.sender != session.username {
        return Err(bad(format!(
            "the message names sender {} but you are logged in as {}",
            msg.sender, session.username
        )));
    }
    let skew = msg.sent_at_ms.saturating_sub(now_ms);
    if skew.unsigned_abs() > MAX_CLOCK_SKEW_MS as u64 {
        return Err(bad(format!(
            "the message's time is {} s {} the server's clock; correct this computer's clock \
             and send again",
            skew.unsigned_abs() / 1000,
            if skew > 0 { "ahead of" } else { "behind" }
        )));
    }
    let most = config.max_text_bytes + CHAT_SEAL_OVERHEAD;
    if msg.ciphertext.len() as u64 > most {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "messages have at most {} bytes of text; send a longer text as a file",
                config.max_text_bytes
            ),
        ));
    }
    if msg.ciphertext.is_empty() {
        return Err(bad("the message has no ciphertext"));
    }
    if msg.signature.is_empty() || msg.signature.len() > MAX_KEY_BYTES {
        return Err(bad(format!(
            "the message's signature has {} bytes; it must have 1 to {MAX_KEY_BYTES}",
            msg.signature.len()
        )));
    }
    match &msg.target {
        ChatTarget::User { username } => check_direct(session, msg, username),
        ChatTarget::Group { name } => {
            let (Some(id), Some(generation)) = (msg.group_id, msg.generation) else {
                return Err(bad(
                    "a group message names its group id and the key generation that seals it",
                ));
            };
            if !msg.keys.is_empty() {
                return Err(bad(
                    "a group message carries no wrapped keys: it is sealed under the group key",
                ));
            }
            Ok(Checked::Group {
                name: access::group_name(name)?,
                id,
                generation,
            })
        }
    }
}

fn check_direct(
    session: &SessionCtx,
    msg: &SealedMessage,
    username: &str,
) -> Result<Checked, ApiError> {
    let folded = names::normalize_username(username).map_err(bad)?;
    if folded != username {
        return Err(bad(format!(
            "the message names its recipient {username}; write the username as the server \
             does ({folded})"
        )));
    }
    if folded == session.username {
        return Err(bad(
            "a direct message goes to someone else, not to yourself",
        ));
    }
    if msg.group_id.is_some() || msg.generation.is_some() {
        return Err(bad("a direct message names no group id or key generation"));
    }
    let mut members: Vec<&str> = msg.keys.iter().map(|k| k.member.as_str()).collect();
    members.sort_unstable();
    let mut want = vec![folded.as_str(), session.username.as_str()];
    want.sort_unstable();
    if members != want {
        return Err(bad(format!(
            "a direct message carries its key wrapped for exactly two readers, {folded} and \
             you ({}); this one has {}",
            session.username,
            if members.is_empty() {
                "none".to_owned()
            } else {
                members.join(", ")
            }
        )));
    }
    if let Some(k) = msg
        .keys
        .iter()
        .find(|k| k.wrapped.is_empty() || k.wrapped.len() > MAX_KEY_BYTES)
    {
        return Err(bad(format!(
            "the key wrapped for {} has {} bytes; it must have 1 to {MAX_KEY_BYTES}",
            k.member,
            k.wrapped.len()
        )));
    }
    Ok(Checked::User { username: folded })
}

/// Serves `chat_send`.
pub async fn send(
    state: &ServerState,
    session: &SessionCtx,
    message: SealedMessage,
) -> Result<Response, ApiError> {
    // A message refused for its shape does not count against the sender's rate: the
    // per-connection request limit already bounds how fast they can be sent.
    let target = check(&state.config.chat, session, &message, now_ms())?;
    state
        .chat
        .limit
        .take(session.user_id, Instant::now())
        .map_err(|wait| ApiError::throttled(wait, format!("too many messages: wait {wait} s")))?;
    let body = super::encode_body(&message)?;
    let session = session.clone();
    let attachment = message.attachment;
    let (id, received_at_ms, readers) = state
        .db
        .run(move |c| store(c, &session, &target, &body, attachment.as_ref()))
        .await?;
    crate::relay::wake(state, &readers);
    Ok(Response::ChatSent { id, received_at_ms })
}

/// Stores a checked message (and the row of the file it carries); returns its id, arrival
/// time and the readers' user ids.
fn store(
    conn: &mut DbConn,
    session: &SessionCtx,
    target: &Checked,
    body: &[u8],
    attachment: Option<&Attachment>,
) -> Result<(i64, i64, Vec<i64>), Failure> {
    let me = session.user_id;
    match target {
        Checked::User { username } => {
            let recipient =
                users::by_name(conn, username)?.ok_or_else(|| no_such_user(username))?;
            db::transaction(conn, |c| {
                rows::lock_users(c, &[me])?;
                let mutual = rows::contact(c, me, recipient.id)?
                    .is_some_and(|r| r.state == rows::STATE_CONTACT);
                if !mutual {
                    return Err(ApiError::forbidden(format!(
                        "{username} is not your contact: `vault contact add {username}` and \
                         wait for them to accept"
                    ))
                    .into());
                }
                let sender_key = sender_key(c, me)?;
                let at = now_ms();
                let id = rows::insert_message(
                    c,
                    &NewMessage {
                        sender_id: me,
                        sender_name: &session.username,
                        kind: KIND_USER,
                        recipient_id: Some(recipient.id),
                        group_id: None,
                        body,
                        sender_key: &sender_key,
                        received_at_ms: at,
                    },
                )?;
                if let Some(attachment) = attachment {
                    files::attach(c, me, id, attachment)?;
                }
                let theirs = rows::conversation_with_user(me);
                let mine = rows::conversation_with_user(recipient.id);
                rows::insert_deliveries(
                    c,
                    &[
                        NewDelivery {
                            message_id: id,
                            user_id: recipient.id,
                            conversation: &theirs,
                            delivered: false,
                            read: false,
                        },
                        NewDelivery {
                            message_id: id,
                            user_id: me,
                            conversation: &mine,
                            delivered: true,
                            read: true,
                        },
                    ],
                )?;
                Ok((id, at, vec![recipient.id, me]))
            })
        }
        Checked::Group {
            name,
            id: group_id,
            generation,
        } => db::transaction(conn, |c| {
            let a = access::member(c, name, me, true)?;
            if a.group.id != *group_id {
                return Err(ApiError::bad_request(format!(
                    "the message is for group id {group_id}, but group {name} has id {}",
                    a.group.id
                ))
                .into());
            }
            if a.group.key_generation != Some(i64::from(*generation)) {
                return Err(ApiError::conflict(format!(
                    "the key of group {name} changed; send again"
                ))
                .into());
            }
            let sender_key = sender_key(c, me)?;
            let at = now_ms();
            let id = rows::insert_message(
                c,
                &NewMessage {
                    sender_id: me,
                    sender_name: &session.username,
                    kind: KIND_GROUP,
                    recipient_id: None,
                    group_id: Some(a.group.id),
                    body,
                    sender_key: &sender_key,
                    received_at_ms: at,
                },
            )?;
            if let Some(attachment) = attachment {
                files::attach(c, me, id, attachment)?;
            }
            let conversation = rows::conversation_of_group(a.group.id);
            let readers: Vec<i64> = groups::members(c, a.group.id)?
                .iter()
                .map(|m| m.member.user_id)
                .collect();
            let deliveries: Vec<NewDelivery<'_>> = readers
                .iter()
                .map(|&user_id| NewDelivery {
                    message_id: id,
                    user_id,
                    conversation: &conversation,
                    delivered: user_id == me,
                    read: user_id == me,
                })
                .collect();
            rows::insert_deliveries(c, &deliveries)?;
            Ok((id, at, readers))
        }),
    }
}

/// The sender's public key now (stored with the message, to verify its signature).
fn sender_key(conn: &mut DbConn, user_id: i64) -> Result<Vec<u8>, Failure> {
    let user = users::by_id(conn, user_id)?
        .ok_or_else(|| ApiError::forbidden("this account no longer exists"))?;
    Ok(user.public_key)
}

#[cfg(test)]
mod tests {
    use vault_proto::proto::{ByteBuf, WrappedMessageKey};

    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn alice() -> SessionCtx {
        SessionCtx {
            session_id: 1,
            user_id: 1,
            username: "alice".into(),
        }
    }

    fn key(member: &str, len: usize) -> WrappedMessageKey {
        WrappedMessageKey {
            member: member.into(),
            wrapped: ByteBuf::from(vec![1; len]),
        }
    }

    fn direct() -> SealedMessage {
        SealedMessage {
            sender: "alice".into(),
            target: ChatTarget::User {
                username: "bob".into(),
            },
            group_id: None,
            generation: None,
            sent_at_ms: NOW,
            ciphertext: ByteBuf::from(vec![9; 100]),
            keys: vec![key("bob", 384), key("alice", 384)],
            signature: ByteBuf::from(vec![5; 384]),
            attachment: None,
        }
    }

    fn refusal(msg: &SealedMessage) -> ApiError {
        let config = ChatConfig {
            max_text_bytes: 1000,
            messages_per_minute: 10,
        };
        match check(&config, &alice(), msg, NOW) {
            Ok(c) => panic!("expected a refusal, got {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_well_formed_direct_message_passes() {
        let config = ChatConfig::default();
        assert_eq!(
            check(&config, &alice(), &direct(), NOW).expect("ok"),
            Checked::User {
                username: "bob".into()
            }
        );
        // Up to ten minutes off either way.
        let mut m = direct();
        m.sent_at_ms = NOW - MAX_CLOCK_SKEW_MS;
        assert!(check(&config, &alice(), &m, NOW).is_ok());
    }

    #[test]
    fn direct_messages_are_refused_with_reasons() {
        type Change = Box<dyn Fn(&mut SealedMessage)>;
        let cases: Vec<(&str, Change, ErrorCode, &str)> = vec![
            (
                "forged sender",
                Box::new(|m| m.sender = "carol".into()),
                ErrorCode::BadRequest,
                "names sender carol but you are logged in as alice",
            ),
            (
                "clock ahead",
                Box::new(|m| m.sent_at_ms = NOW + MAX_CLOCK_SKEW_MS + 1000),
                ErrorCode::BadRequest,
                "601 s ahead of",
            ),
            (
                "clock behind",
                Box::new(|m| m.sent_at_ms = i64::MIN),
                ErrorCode::BadRequest,
                "behind the server's clock",
            ),
            (
                "too large",
                Box::new(|m| m.ciphertext = ByteBuf::from(vec![0; 1257])),
                ErrorCode::TooLarge,
                "at most 1000 bytes of text",
            ),
            (
                "empty",
                Box::new(|m| m.ciphertext = ByteBuf::new()),
                ErrorCode::BadRequest,
                "no ciphertext",
            ),
            (
                "no signature",
                Box::new(|m| m.signature = ByteBuf::new()),
                ErrorCode::BadRequest,
                "signature has 0 bytes",
            ),
            (
                "long signature",
                Box::new(|m| m.signature = ByteBuf::from(vec![0; 1025])),
                ErrorCode::BadRequest,
                "1 to 1024",
            ),
            (
                "one key",
                Box::new(|m| {
                    m.keys.pop();
                }),
                ErrorCode::BadRequest,
                "exactly two readers",
            ),
            (
                "a third reader",
                Box::new(|m| m.keys.push(key("carol", 384))),
                ErrorCode::BadRequest,
                "exactly two readers",
            ),
            (
                "the wrong reader",
                Box::new(|m| m.keys[1] = key("carol", 384)),
                ErrorCode::BadRequest,
                "bob, carol",
            ),
            (
                "a long key",
                Box::new(|m| m.keys[0] = key("bob", 1025)),
                ErrorCode::BadRequest,
                "wrapped for bob has 1025 bytes",
            ),
            (
                "a group id",
                Box::new(|m| m.group_id = Some(3)),
                ErrorCode::BadRequest,
                "names no group id",
            ),
            (
                "to oneself",
                Box::new(|m| {
                    m.target = ChatTarget::User {
                        username: "alice".into(),
                    };
                }),
                ErrorCode::BadRequest,
                "not to yourself",
            ),
            (
                "unfolded name",
                Box::new(|m| {
                    m.target = ChatTarget::User {
                        username: "Bob".into(),
                    };
                }),
                ErrorCode::BadRequest,
                "(bob)",
            ),
        ];
        for (what, change, code, says) in cases {
            let mut m = direct();
            change(&mut m);
            let e = refusal(&m);
            assert_eq!(e.code, code, "{what}: {e}");
            assert!(e.message.contains(says), "{what}: {e}");
        }
    }

    #[test]
    fn group_messages_name_their_group_and_generation_and_carry_no_keys() {
        let mut m = direct();
        m.target = ChatTarget::Group {
            name: "team".into(),
        };
        m.keys.clear();
        assert!(refusal(&m).message.contains("names its group id"));
        m.group_id = Some(4);
        m.generation = Some(2);
        let config = ChatConfig::default();
        assert_eq!(
            check(&config, &alice(), &m, NOW).expect("ok"),
            Checked::Group {
                name: "team".into(),
                id: 4,
                generation: 2
            }
        );
        m.keys.push(key("bob", 10));
        assert!(refusal(&m).message.contains("no wrapped keys"));
    }
}

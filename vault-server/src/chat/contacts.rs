//! Profiles and contacts. A relationship is stored once per side (`contacts`): the one who
//! asked sees `request_sent`, the one asked `request_received`, both `contact` once it is
//! accepted. Either side may remove it in any state; both rows go. The other side hears
//! of each change on their subscriptions (`contact_request`, `contact_changed`).

use vault_proto::proto::chat::MAX_DISPLAY_NAME_CHARS;
use vault_proto::proto::{ApiError, ContactInfo, ContactState, Event, Response, names};

use super::{no_such_user, presence};
use crate::db::chat::{self as rows, STATE_CONTACT, STATE_REQUEST_RECEIVED, STATE_REQUEST_SENT};
use crate::db::{self, DbConn, users};
use crate::error::Failure;
use crate::groups::access;
use crate::net::connection::SessionCtx;
use crate::state::ServerState;

/// A display name as stored: trimmed, 1 to [`MAX_DISPLAY_NAME_CHARS`] characters, no
/// control characters.
pub fn display_name(raw: &str) -> Result<String, ApiError> {
    let name = raw.trim();
    let chars = name.chars().count();
    if chars == 0 {
        return Err(ApiError::bad_request(
            "a display name cannot be empty; to remove yours, clear it instead",
        ));
    }
    if chars > MAX_DISPLAY_NAME_CHARS {
        return Err(ApiError::bad_request(format!(
            "a display name has at most {MAX_DISPLAY_NAME_CHARS} characters, this one {chars}"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "a display name cannot contain control characters (tabs, new lines, escapes)",
        ));
    }
    Ok(name.to_owned())
}

pub async fn profile_set(
    state: &ServerState,
    session: &SessionCtx,
    raw: Option<String>,
) -> Result<Response, ApiError> {
    let name = raw.as_deref().map(display_name).transpose()?;
    let user = session.user_id;
    state
        .db
        .run(move |c| rows::set_display_name(c, user, name.as_deref()))
        .await?;
    Ok(Response::Ok)
}

fn contact_state(raw: &str) -> Result<ContactState, ApiError> {
    match raw {
        STATE_CONTACT => Ok(ContactState::Contact),
        STATE_REQUEST_SENT => Ok(ContactState::RequestSent),
        STATE_REQUEST_RECEIVED => Ok(ContactState::RequestReceived),
        other => Err(crate::error::internal(
            "bad state in contacts",
            format!("{other:?}"),
        )),
    }
}

/// The other account of a contact request, by name: not the caller, and existing.
fn other_user(conn: &mut DbConn, session: &SessionCtx, name: &str) -> Result<users::User, Failure> {
    if name == session.username {
        return Err(
            ApiError::bad_request("that is your own account: contacts are other people").into(),
        );
    }
    Ok(users::by_name(conn, name)?.ok_or_else(|| no_such_user(name))?)
}

/// Runs `work` for the caller and user `raw` in one transaction that first locks both
/// accounts' rows; returns the other user's id and name with the result.
async fn with_pair<T, F>(
    state: &ServerState,
    session: &SessionCtx,
    raw: &str,
    work: F,
) -> Result<(i64, String, T), ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut DbConn, i64, &str) -> Result<T, Failure> + Send + 'static,
{
    let name = access::username(raw)?;
    let session = session.clone();
    Ok(state
        .db
        .run(move |c| {
            let other = other_user(c, &session, &name)?;
            let me = session.user_id;
            db::transaction(c, |c| {
                rows::lock_users(c, &[me, other.id])?;
                let out = work(c, other.id, &other.username)?;
                Ok::<_, Failure>((other.id, other.username.clone(), out))
            })
        })
        .await?)
}

/// What `contact_add` did.
enum Added {
    Requested,
    AlreadyRequested,
    BecameContacts,
}

pub async fn add(
    state: &ServerState,
    session: &SessionCtx,
    raw: &str,
) -> Result<Response, ApiError> {
    let me = session.user_id;
    let (other, name, added) = with_pair(state, session, raw, move |c, other, name| {
        let mine = rows::contact(c, me, other)?;
        match mine.as_ref().map(|r| r.state.as_str()) {
            Some(STATE_CONTACT) => {
                Err(ApiError::conflict(format!("{name} is already your contact")).into())
            }
            Some(STATE_REQUEST_SENT) => Ok(Added::AlreadyRequested),
            Some(STATE_REQUEST_RECEIVED) => {
                rows::set_pair(c, me, other, STATE_CONTACT, STATE_CONTACT, db::now())?;
                Ok(Added::BecameContacts)
            }
            _ => {
                rows::set_pair(
                    c,
                    me,
                    other,
                    STATE_REQUEST_SENT,
                    STATE_REQUEST_RECEIVED,
                    db::now(),
                )?;
                Ok(Added::Requested)
            }
        }
    })
    .await?;
    match added {
        Added::Requested => crate::relay::send(
            state,
            other,
            &Event::ContactRequest {
                from: session.username.clone(),
            },
        ),
        Added::AlreadyRequested => {}
        Added::BecameContacts => {
            crate::relay::send(state, other, &changed(session, Some(ContactState::Contact)));
            presence::introduce(state, (me, &session.username), (other, &name)).await;
        }
    }
    Ok(Response::Ok)
}

fn changed(session: &SessionCtx, state: Option<ContactState>) -> Event {
    Event::ContactChanged {
        username: session.username.clone(),
        state,
    }
}

fn no_request(name: &str) -> Failure {
    ApiError::not_found(format!(
        "no contact request from {name} (see `vault contact list`)"
    ))
    .into()
}

/// Accepts or rejects a request the caller received.
async fn answer(
    state: &ServerState,
    session: &SessionCtx,
    raw: &str,
    accept: bool,
) -> Result<Response, ApiError> {
    let me = session.user_id;
    let (other, name, ()) = with_pair(state, session, raw, move |c, other, name| {
        let mine = rows::contact(c, me, other)?;
        if mine.as_ref().map(|r| r.state.as_str()) != Some(STATE_REQUEST_RECEIVED) {
            return Err(no_request(name));
        }
        if accept {
            rows::set_pair(c, me, other, STATE_CONTACT, STATE_CONTACT, db::now())?;
        } else {
            rows::delete_pair(c, me, other)?;
        }
        Ok(())
    })
    .await?;
    let new = accept.then_some(ContactState::Contact);
    crate::relay::send(state, other, &changed(session, new));
    if accept {
        presence::introduce(state, (me, &session.username), (other, &name)).await;
    }
    Ok(Response::Ok)
}

pub async fn accept(
    state: &ServerState,
    session: &SessionCtx,
    raw: &str,
) -> Result<Response, ApiError> {
    answer(state, session, raw, true).await
}

pub async fn reject(
    state: &ServerState,
    session: &SessionCtx,
    raw: &str,
) -> Result<Response, ApiError> {
    answer(state, session, raw, false).await
}

pub async fn remove(
    state: &ServerState,
    session: &SessionCtx,
    raw: &str,
) -> Result<Response, ApiError> {
    let me = session.user_id;
    let (other, _, ()) = with_pair(state, session, raw, move |c, other, name| {
        if !rows::delete_pair(c, me, other)? {
            return Err(ApiError::not_found(format!(
                "{name} is not your contact and there is no request between you"
            ))
            .into());
        }
        Ok(())
    })
    .await?;
    crate::relay::send(state, other, &changed(session, None));
    Ok(Response::Ok)
}

/// The caller's relationships: all of them, or the one with `only` (none if there is none).
pub async fn list(
    state: &ServerState,
    session: &SessionCtx,
    only: Option<String>,
) -> Result<Response, ApiError> {
    let me = session.user_id;
    let only = only
        .map(|name| names::normalize_username(&name))
        .transpose()
        .map_err(ApiError::bad_request)?;
    let (found, online) = state
        .db
        .run(move |c| {
            let found = rows::contacts_of(c, me, only.as_deref())?;
            let ids: Vec<i64> = found.iter().map(|row| row.contact.other_id).collect();
            let online = db::presence::online_among(c, &ids, db::now())?;
            Ok::<_, db::DbError>((found, online))
        })
        .await?;
    let contacts = found
        .into_iter()
        .map(|row| {
            let contact_state = contact_state(&row.contact.state)?;
            let mutual = contact_state == ContactState::Contact;
            Ok(ContactInfo {
                username: row.username,
                display_name: row.display_name,
                state: contact_state,
                online: mutual && online.contains(&row.contact.other_id),
                last_seen: if mutual { row.last_seen_at } else { None },
                public_key: row.public_key.into(),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(Response::Contacts { contacts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(display_name("  Alice A.  ").expect("ok"), "Alice A.");
        assert_eq!(display_name("Ünïcødé 名前").expect("ok"), "Ünïcødé 名前");
        let longest = "é".repeat(MAX_DISPLAY_NAME_CHARS);
        assert_eq!(display_name(&longest).expect("ok"), longest);
        for bad in ["", "   ", "a\tb", "bell\u{7}", "new\nline"] {
            assert!(display_name(bad).is_err(), "{bad:?}");
        }
        let e = display_name(&"x".repeat(MAX_DISPLAY_NAME_CHARS + 1)).expect_err("long");
        assert!(e.message.contains("at most 64"), "{e}");
    }
}

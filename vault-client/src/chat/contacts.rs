//! Contacts and the profile (README.md, Chat): `vault contact add|accept|reject|remove|list` and
//! `vault profile set` as requests. A change answers with where the relationship stands
//! afterwards, read back from `contact_list` (an `add` may complete a request the other
//! side made first).

use vault_core::proto::chat::{ContactInfo, ContactState, MAX_DISPLAY_NAME_CHARS};
use vault_core::proto::{Request, Response};

use crate::files::{Files, FilesError, unexpected};
use crate::groups::ops::username;

/// A change to a contact relationship.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Ask to become contacts (or accept, if they asked first).
    Add,
    Accept,
    Reject,
    /// End the relationship, or withdraw a request, on both sides.
    Remove,
}

/// Every relationship of the caller, as the server lists it.
pub async fn list(files: &Files) -> Result<Vec<ContactInfo>, FilesError> {
    match files.call(&Request::ContactList).await? {
        Response::Contacts { contacts } => Ok(contacts),
        other => Err(unexpected("contact_list", &other)),
    }
}

/// The relationship with `user` (case-folded), asking the server for that one only.
pub async fn get(files: &Files, user: &str) -> Result<Option<ContactInfo>, FilesError> {
    let request = Request::ContactGet {
        username: user.to_string(),
    };
    match files.call(&request).await? {
        Response::Contacts { contacts } => Ok(contacts.into_iter().find(|c| c.username == user)),
        other => Err(unexpected("contact_get", &other)),
    }
}

/// The relationship with `user` (case-folded) in `contacts`.
pub fn find<'a>(contacts: &'a [ContactInfo], user: &str) -> Option<&'a ContactInfo> {
    contacts.iter().find(|c| c.username == user)
}

/// Applies `change` to the relationship with `user`; returns the case-folded name and the
/// state afterwards (`None`: there is none).
pub async fn change(
    files: &Files,
    change: Change,
    user: &str,
) -> Result<(String, Option<ContactState>), FilesError> {
    let user = username(user)?;
    if user == files.user() {
        return Err(FilesError::Usage(
            "you cannot be your own contact: name another user".into(),
        ));
    }
    let username = user.clone();
    let (request, what) = match change {
        Change::Add => (Request::ContactAdd { username }, "contact_add"),
        Change::Accept => (Request::ContactAccept { username }, "contact_accept"),
        Change::Reject => (Request::ContactReject { username }, "contact_reject"),
        Change::Remove => (Request::ContactRemove { username }, "contact_remove"),
    };
    let contacts = match files.call(&request).await? {
        Response::Contacts { contacts } => contacts,
        Response::Ok => list(files).await?,
        other => return Err(unexpected(what, &other)),
    };
    let state = find(&contacts, &user).map(|c| c.state);
    Ok((user, state))
}

/// Checks a display name as the server will: trimmed, 1 to [`MAX_DISPLAY_NAME_CHARS`]
/// characters, no control characters. An empty name means "clear it".
pub fn display_name(raw: &str) -> Result<Option<String>, FilesError> {
    let name = raw.trim();
    if name.is_empty() {
        return Ok(None);
    }
    if name.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(FilesError::Usage(format!(
            "a display name has at most {MAX_DISPLAY_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(FilesError::Usage(
            "a display name cannot contain control characters (tabs, line breaks)".into(),
        ));
    }
    Ok(Some(name.to_owned()))
}

/// Sets the caller's display name (`""` clears it); returns what was set.
pub async fn set_display_name(files: &Files, raw: &str) -> Result<Option<String>, FilesError> {
    let display_name = display_name(raw)?;
    let request = Request::ProfileSet {
        display_name: display_name.clone(),
    };
    match files.call(&request).await? {
        Response::Ok => Ok(display_name),
        other => Err(unexpected("profile_set", &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_trimmed_bounded_and_printable() {
        assert_eq!(
            display_name("  Alice A.  ").expect("ok"),
            Some("Alice A.".into())
        );
        assert_eq!(display_name("   ").expect("clears"), None);
        let long = "é".repeat(MAX_DISPLAY_NAME_CHARS);
        assert_eq!(
            display_name(&long).expect("at the limit"),
            Some(long.clone())
        );
        let err = display_name(&format!("{long}x")).expect_err("too long");
        assert!(err.to_string().contains("at most 64 characters"), "{err}");
        let err = display_name("a\u{1b}[31mred").expect_err("escape");
        assert!(err.to_string().contains("control characters"), "{err}");
    }
}

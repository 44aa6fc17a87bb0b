//! `vault chat history` and `vault chat inbox` as requests: a page of one conversation,
//! every message checked and opened ([`super::receive`]) and put oldest first; the
//! conversations with their unread counts, newest first.

use vault_core::proto::chat::{ChatTarget, Conversation, MAX_HISTORY_PAGE};
use vault_core::proto::{Request, Response};

use super::receive::{Reader, Received};
use crate::files::{Files, FilesError, unexpected};

/// How many messages a page has unless asked otherwise.
pub const DEFAULT_PAGE: u32 = 50;

/// Checks a page size given on the command line.
pub fn check_limit(limit: u32) -> Result<u32, FilesError> {
    if (1..=MAX_HISTORY_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(FilesError::Usage(format!(
            "--limit takes 1 to {MAX_HISTORY_PAGE} messages, not {limit}"
        )))
    }
}

/// Up to `limit` messages of the conversation with `target` whose ids are below `before`
/// (the newest ones), oldest first. The server marks them read.
pub async fn history(
    files: &Files,
    target: &ChatTarget,
    limit: u32,
    before: Option<i64>,
) -> Result<Vec<Received>, FilesError> {
    let request = Request::ChatHistory {
        target: target.clone(),
        limit: check_limit(limit)?,
        before,
    };
    let mut messages = match files.call(&request).await? {
        Response::ChatMessages { messages } => messages,
        other => return Err(unexpected("chat_history", &other)),
    };
    messages.sort_by_key(|m| m.id);
    let group = match target {
        ChatTarget::Group { name } => Some(name.as_str()),
        ChatTarget::User { .. } => None,
    };
    let mut reader = Reader::new(files)?;
    let mut out = Vec::with_capacity(messages.len());
    for message in &messages {
        out.push(reader.read_in(message, group).await);
    }
    Ok(out)
}

/// The caller's conversations, newest first.
pub async fn inbox(files: &Files) -> Result<Vec<Conversation>, FilesError> {
    match files.call(&Request::ChatInbox).await? {
        Response::Inbox { mut conversations } => {
            conversations.sort_by(|a, b| {
                (b.last_received_at_ms, b.last_id).cmp(&(a.last_received_at_ms, a.last_id))
            });
            Ok(conversations)
        }
        other => Err(unexpected("chat_inbox", &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_holds_one_to_the_protocol_limit() {
        assert_eq!(check_limit(1).expect("one"), 1);
        assert_eq!(
            check_limit(MAX_HISTORY_PAGE).expect("max"),
            MAX_HISTORY_PAGE
        );
        for bad in [0, MAX_HISTORY_PAGE + 1] {
            let err = check_limit(bad).expect_err("out of range");
            assert!(err.to_string().contains("--limit takes 1 to 500"), "{err}");
        }
    }
}

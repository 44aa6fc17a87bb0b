//! Chat targets as people type them: `USER` for a direct conversation, `@group` for a
//! group's, checked and case-folded into a [`ChatTarget`], and shown the same way.

use vault_core::proto::chat::ChatTarget;
use vault_core::proto::names;

use crate::files::FilesError;

/// Parses `alice` or `@team` (case-folded, checked by the shared name rules).
pub fn parse(raw: &str) -> Result<ChatTarget, FilesError> {
    let raw = raw.trim();
    if let Some(group) = raw.strip_prefix('@') {
        let name = names::normalize_group_name(group).map_err(FilesError::Usage)?;
        return Ok(ChatTarget::Group { name });
    }
    let username = names::normalize_username(raw).map_err(|e| {
        FilesError::Usage(format!(
            "{e} (a chat target is USER for a direct message, or @GROUP)"
        ))
    })?;
    Ok(ChatTarget::User { username })
}

/// `alice` or `@team`, as [`parse`] reads it.
pub fn show(target: &ChatTarget) -> String {
    match target {
        ChatTarget::User { username } => username.clone(),
        ChatTarget::Group { name } => format!("@{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_groups_are_told_apart_and_case_folded() {
        assert_eq!(
            parse("Alice").expect("user"),
            ChatTarget::User {
                username: "alice".into()
            }
        );
        let team = parse("@Team").expect("group");
        assert_eq!(
            team,
            ChatTarget::Group {
                name: "team".into()
            }
        );
        assert_eq!(show(&team), "@team");
        assert_eq!(show(&parse("bob").expect("user")), "bob");
        for bad in ["", "@", "a b", "@x;y"] {
            let err = parse(bad).expect_err(bad);
            assert!(!err.to_string().is_empty());
        }
    }
}

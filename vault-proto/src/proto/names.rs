//! Validation of account names, email addresses and the form of mailed codes, shared by
//! client and server so both give the same answer. Usernames are case-folded before they
//! are checked or stored.

/// Case-folds and checks a username: 3–32 characters of `[a-z0-9_.-]` (docs/SECURITY.md §4.1).
pub fn normalize_username(raw: &str) -> Result<String, String> {
    normalize_name(raw, "username")
}

/// Case-folds and checks a group name: the same rules as usernames.
pub fn normalize_group_name(raw: &str) -> Result<String, String> {
    normalize_name(raw.strip_prefix('@').unwrap_or(raw), "group name")
}

fn normalize_name(raw: &str, what: &str) -> Result<String, String> {
    let name = raw.trim().to_lowercase();
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
    if !(3..=32).contains(&name.len()) || !ok_chars {
        return Err(format!(
            "invalid {what} {raw:?}: use 3 to 32 characters from a-z, 0-9, '_', '.' and '-'"
        ));
    }
    Ok(name)
}

/// Checks the syntax of an email address and lower-cases it. Deliberately simple: one `@`,
/// a non-empty local part, a domain with a dot, no spaces or control characters, at most
/// 254 characters. Whether the address works is proved by the mailed code.
pub fn normalize_email(raw: &str) -> Result<String, String> {
    let email = raw.trim().to_lowercase();
    let bad = || format!("invalid email address {raw:?}: expected something like name@example.org");
    if email.len() > 254
        || email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c))
    {
        return Err(bad());
    }
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    let domain_ok = domain.contains('.')
        && !domain.contains('@')
        && domain
            .split('.')
            .all(|label| !label.is_empty() && label.len() <= 63);
    if local.is_empty() || local.len() > 64 || !domain_ok {
        return Err(bad());
    }
    Ok(email)
}

/// The characters of a mailed verification code (no 0/O, 1/I), docs/FORMAT.md §5.
pub const CODE_ALPHABET: &str = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// How many characters a mailed verification code has.
pub const CODE_LEN: usize = 8;

/// A verification code as people type it: spaces and dashes dropped, upper-cased, then
/// checked to be [`CODE_LEN`] characters of [`CODE_ALPHABET`]. Whether it is the right
/// code only the server can say.
pub fn normalize_code(raw: &str) -> Result<String, String> {
    let code: String = raw
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect::<String>()
        .to_ascii_uppercase();
    if code.len() != CODE_LEN || !code.chars().all(|c| CODE_ALPHABET.contains(c)) {
        return Err(format!(
            "{raw:?} is not a verification code: the code in the mail is {CODE_LEN} characters \
             of A-Z and 2-9 (no 0, 1, I or O)"
        ));
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_follow_the_username_rules() {
        assert_eq!(normalize_group_name("@Team").expect("valid"), "team");
        assert!(
            normalize_group_name("a/b")
                .expect_err("a slash")
                .contains("group name")
        );
    }

    #[test]
    fn usernames() {
        assert_eq!(normalize_username("Alice").expect("valid"), "alice");
        assert_eq!(normalize_username("a.b-c_9").expect("valid"), "a.b-c_9");
        for bad in [
            "ab",
            "",
            "a b",
            "al/ice",
            "../x",
            "ä-user",
            &"x".repeat(33),
            "nul\0x",
        ] {
            assert!(
                normalize_username(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        assert!(normalize_username(&"x".repeat(32)).is_ok());
    }

    #[test]
    fn codes_are_read_as_people_type_them() {
        assert_eq!(normalize_code("abcd2345").expect("valid"), "ABCD2345");
        assert_eq!(normalize_code(" ABCD-2345 ").expect("valid"), "ABCD2345");
        assert_eq!(normalize_code("abcd 2345").expect("valid"), "ABCD2345");
        for bad in [
            "",
            "WRONG",
            "ABCD23456",
            "ABCD234",
            "ABCD0345",
            "ABCD1345",
            "ABCDO345",
            "ABCDÄ345",
        ] {
            let e = normalize_code(bad).expect_err(bad);
            assert!(e.contains("8 characters"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn emails() {
        assert_eq!(
            normalize_email(" Bob@Example.ORG ").expect("valid"),
            "bob@example.org"
        );
        for bad in [
            "bob",
            "bob@",
            "@x.org",
            "bob@localhost",
            "a b@x.org",
            "a@b@c.org",
            "a@x..org",
            "<a@x.org>",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?} should be refused");
        }
    }
}

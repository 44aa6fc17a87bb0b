//! How names and texts that come from elsewhere — remote names and paths, local paths,
//! usernames, group names, chat texts, error messages — appear on a terminal. A plain one
//! is shown as it is; one with a control character or a bidirectional formatting
//! character is shown in the shell's `$'…'` quoting, as GNU `ls` does, with those
//! characters escaped (`$'two\nlines'`, `$'\e[2J'`, `$'\u202E'`). So a name cannot split
//! a listing into lines, drive the terminal or pass for another, and the quoted form,
//! pasted into a shell, is the name again. JSON output carries names as they are.

use std::borrow::Cow;
use std::fmt::{self, Write};

/// Whether `c` changes the direction of the text around it (it could make `alice: hi`
/// read as something else).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn is_special(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

/// Whether `text` must be quoted to be shown: it holds a control or bidirectional
/// formatting character, or it begins like a quoted name does.
pub fn needs_quoting(text: &str) -> bool {
    text.starts_with("$'") || text.chars().any(is_special)
}

/// Writes the parts, one after the other, inside `$'…'` with every special character,
/// `\` and `'` escaped.
pub fn write_quoted<'a>(
    out: &mut impl Write,
    parts: impl IntoIterator<Item = &'a str>,
) -> fmt::Result {
    out.write_str("$'")?;
    for part in parts {
        for c in part.chars() {
            match c {
                '\\' => out.write_str("\\\\")?,
                '\'' => out.write_str("\\'")?,
                '\u{7}' => out.write_str("\\a")?,
                '\u{8}' => out.write_str("\\b")?,
                '\t' => out.write_str("\\t")?,
                '\n' => out.write_str("\\n")?,
                '\u{b}' => out.write_str("\\v")?,
                '\u{c}' => out.write_str("\\f")?,
                '\r' => out.write_str("\\r")?,
                '\u{1b}' => out.write_str("\\e")?,
                c if is_special(c) && (c as u32) < 0x80 => write!(out, "\\x{:02X}", c as u32)?,
                c if is_special(c) => write!(out, "\\u{:04X}", c as u32)?,
                c => out.write_char(c)?,
            }
        }
    }
    out.write_char('\'')
}

/// `text` as it may be shown on a terminal: unchanged when plain, else quoted.
pub fn shown(text: &str) -> Cow<'_, str> {
    if !needs_quoting(text) {
        return Cow::Borrowed(text);
    }
    let mut quoted = String::with_capacity(text.len() + 8);
    // Writing into a String cannot fail.
    let _ = write_quoted(&mut quoted, [text]);
    Cow::Owned(quoted)
}

/// [`shown`] for a local path (not UTF-8 parts become U+FFFD).
pub fn shown_path(path: &std::path::Path) -> String {
    shown(&path.to_string_lossy()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_unchanged() {
        for plain in [
            "report.pdf",
            "a b/c d",
            "grüße",
            "it's",
            "back\\slash",
            "$HOME",
            "日本",
        ] {
            assert_eq!(shown(plain), plain, "{plain:?}");
            assert!(matches!(shown(plain), Cow::Borrowed(_)));
        }
    }

    #[test]
    fn control_characters_are_escaped_inside_shell_quotes() {
        assert_eq!(shown("two\nlines"), r"$'two\nlines'");
        assert_eq!(shown("tab\there"), r"$'tab\there'");
        assert_eq!(shown("\u{1b}[2Jclear"), r"$'\e[2Jclear'");
        assert_eq!(shown("nul\0del\u{7f}"), r"$'nul\x00del\x7F'");
        assert_eq!(shown("c1\u{85}"), r"$'c1\u0085'");
        assert_eq!(shown("\u{202e}gnp.exe"), r"$'\u202Egnp.exe'");
        assert_eq!(shown("bell\u{7}\r"), r"$'bell\a\r'");
        // Inside the quotes, a backslash or quote of the name is escaped too.
        assert_eq!(shown("it's\n\\"), r"$'it\'s\n\\'");
    }

    #[test]
    fn a_name_that_looks_quoted_is_quoted() {
        assert_eq!(shown("$'x'"), r"$'$\'x\''");
        assert_eq!(shown("a$'x'"), "a$'x'");
    }

    #[test]
    fn every_special_character_leaves_no_raw_control_behind() {
        for c in (0u32..0x100)
            .chain(0x2000..0x2070)
            .filter_map(char::from_u32)
        {
            let text = format!("a{c}b");
            let out = shown(&text);
            assert!(!out.chars().any(is_special), "{c:?} → {out:?}");
        }
    }

    #[test]
    fn parts_are_quoted_as_one() {
        let mut out = String::new();
        write_quoted(&mut out, ["dir/", "a\nb"]).expect("string");
        assert_eq!(out, r"$'dir/a\nb'");
    }
}

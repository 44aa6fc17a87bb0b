//! Remote paths as people type them (README.md, Command reference): `/a/b.txt` or `a/b.txt` in the
//! personal space, `@team/a/b.txt` in a group's space. Every segment is checked with
//! `format::names::validate_segment`; one trailing `/` is kept as a hint that the path names a
//! directory (the `cp` target rule).

use vault_core::format::names::validate_segment;
use vault_core::proto::NsRef;
use vault_core::proto::names::normalize_group_name;

use super::FilesError;

/// At most this many segments (the server's limit on encrypted paths).
pub const MAX_DEPTH: usize = vault_core::proto::files::MAX_PATH_DEPTH;

/// A checked remote path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemotePath {
    pub ns: NsRef,
    /// Plaintext segments from the namespace root; empty for the root.
    pub segments: Vec<String>,
    /// The path was typed with a trailing `/`.
    pub dir_hint: bool,
}

impl RemotePath {
    /// The root of the personal space.
    pub fn root() -> Self {
        RemotePath {
            ns: NsRef::Personal,
            segments: Vec::new(),
            dir_hint: true,
        }
    }

    /// Parses and checks `text`; the error names the bad segment.
    pub fn parse(text: &str) -> Result<Self, FilesError> {
        let bad = |why: String| FilesError::Usage(format!("invalid remote path {text:?}: {why}"));
        let (ns, rest) = match text.strip_prefix('@') {
            Some(group) => {
                let (name, rest) = group.split_once('/').unwrap_or((group, ""));
                if name.is_empty() {
                    return Err(bad("a group path is @GROUP/PATH".into()));
                }
                let name = normalize_group_name(name).map_err(bad)?;
                (NsRef::Group { name }, rest)
            }
            None => (NsRef::Personal, text.strip_prefix('/').unwrap_or(text)),
        };
        if rest.contains('\0') {
            return Err(bad("it contains a NUL character".into()));
        }
        if rest.starts_with('/') {
            return Err(bad("segment 1 is empty (two '/' in a row)".into()));
        }
        let (rest, dir_hint) = match rest.strip_suffix('/') {
            Some(r) => (r, true),
            None => (rest, rest.is_empty()),
        };
        let mut segments = Vec::new();
        if !rest.is_empty() {
            for (i, segment) in rest.split('/').enumerate() {
                if segment.is_empty() {
                    return Err(bad(format!(
                        "segment {} is empty (two '/' in a row)",
                        i + 1
                    )));
                }
                validate_segment(segment)
                    .map_err(|e| bad(format!("segment {} ({segment:?}): {e}", i + 1)))?;
                segments.push(segment.to_owned());
            }
        }
        if segments.len() > MAX_DEPTH {
            return Err(bad(format!("a path has at most {MAX_DEPTH} segments")));
        }
        Ok(RemotePath {
            ns,
            segments,
            dir_hint,
        })
    }

    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// The last segment (`None` at the root).
    pub fn name(&self) -> Option<&str> {
        self.segments.last().map(String::as_str)
    }

    /// This path with `name` appended (a checked segment).
    pub fn join(&self, name: &str) -> Result<Self, FilesError> {
        validate_segment(name)
            .map_err(|e| FilesError::Usage(format!("cannot store {name:?} remotely: {e}")))?;
        let mut segments = self.segments.clone();
        segments.push(name.to_owned());
        if segments.len() > MAX_DEPTH {
            return Err(FilesError::Usage(format!(
                "{}/{name}: a path has at most {MAX_DEPTH} segments",
                self
            )));
        }
        Ok(RemotePath {
            ns: self.ns.clone(),
            segments,
            dir_hint: false,
        })
    }

    /// This path with relative `segments` appended (already checked, e.g. decrypted names).
    pub fn join_all(&self, rest: &[String]) -> Self {
        let mut segments = self.segments.clone();
        segments.extend_from_slice(rest);
        RemotePath {
            ns: self.ns.clone(),
            segments,
            dir_hint: false,
        }
    }

    /// The parent directory (the root is its own parent).
    pub fn parent(&self) -> Self {
        let mut segments = self.segments.clone();
        segments.pop();
        RemotePath {
            ns: self.ns.clone(),
            segments,
            dir_hint: true,
        }
    }

    /// Whether `other` is this path or lies under it.
    pub fn contains(&self, other: &RemotePath) -> bool {
        self.ns == other.ns && other.segments.starts_with(&self.segments)
    }
}

impl std::fmt::Display for RemotePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let NsRef::Group { name } = &self.ns {
            write!(f, "@{name}")?;
        }
        write!(f, "/{}", self.segments.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_paths_absolute_or_relative() {
        let a = RemotePath::parse("/a/b.txt").expect("abs");
        let b = RemotePath::parse("a/b.txt").expect("rel");
        assert_eq!(a, b);
        assert_eq!(a.segments, ["a", "b.txt"]);
        assert!(!a.dir_hint);
        assert_eq!(a.to_string(), "/a/b.txt");
        assert!(RemotePath::parse("/").expect("root").is_root());
        assert!(RemotePath::parse("").expect("root").is_root());
        assert!(RemotePath::parse("docs/").expect("dir").dir_hint);
    }

    #[test]
    fn group_paths() {
        let p = RemotePath::parse("@Team/a/b").expect("group");
        assert_eq!(
            p.ns,
            NsRef::Group {
                name: "team".into()
            }
        );
        assert_eq!(p.segments, ["a", "b"]);
        assert_eq!(p.to_string(), "@team/a/b");
        assert!(RemotePath::parse("@team").expect("root").is_root());
        assert!(RemotePath::parse("@/a").is_err());
        let e = RemotePath::parse("@a b/x").expect_err("a bad group name");
        assert!(e.to_string().contains("group name"), "{e}");
    }

    #[test]
    fn bad_segments_are_named() {
        for (text, needle) in [
            ("a/../b", "segment 2"),
            ("./a", "segment 1"),
            ("a//b", "segment 2 is empty"),
            ("a\0b", "NUL"),
            ("//", "empty"),
        ] {
            let e = RemotePath::parse(text).expect_err(text).to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
        let long = "x".repeat(256);
        let e = RemotePath::parse(&format!("a/{long}")).expect_err("long");
        assert!(e.to_string().contains("255"), "{e}");
        let deep = vec!["d"; MAX_DEPTH + 1].join("/");
        assert!(RemotePath::parse(&deep).is_err());
    }

    #[test]
    fn join_parent_contains() {
        let p = RemotePath::parse("/a").expect("p");
        let c = p.join("b").expect("join");
        assert_eq!(c.to_string(), "/a/b");
        assert_eq!(c.parent(), RemotePath::parse("/a/").expect("a/"));
        assert!(p.contains(&c));
        assert!(!c.contains(&p));
        assert!(p.join("..").is_err());
    }
}

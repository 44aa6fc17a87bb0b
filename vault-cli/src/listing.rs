//! Output of the listing commands (`ls`, `du`, `quota`, `versions`, `trash ls`): human
//! text on stdout, or JSON with `--json`.

use std::io::Write;

use serde_json::{Value, json};
use vault_client::files::remote::{Entry, TrashEntry, Versions};
use vault_core::calendar::civil_from_days;
use vault_core::proto::{EntryKind, Usage};
use vault_core::units::format_size;

use crate::escape::{self, shown};
use crate::out::outln;

/// Unix seconds as `YYYY-MM-DD HH:MM` UTC.
pub fn short_time(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        rem / 60 % 60
    )
}

fn kind(k: EntryKind) -> &'static str {
    match k {
        EntryKind::File => "file",
        EntryKind::Dir => "dir",
    }
}

/// The name shown for an entry below the listed directory of `depth` segments (a folder's
/// with a trailing `/`), written straight into the output; quoted as a whole when a
/// segment needs it (`$'a\nb'/`, see [`crate::escape`]).
struct ShownName<'a> {
    entry: &'a Entry,
    depth: usize,
}

impl std::fmt::Display for ShownName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let segments = &self.entry.path.segments;
        let shown = &segments[self.depth.min(segments.len())..];
        if shown.iter().any(|s| escape::needs_quoting(s)) {
            let mut parts = Vec::with_capacity(shown.len() * 2);
            for (i, segment) in shown.iter().enumerate() {
                if i > 0 {
                    parts.push("/");
                }
                parts.push(segment.as_str());
            }
            escape::write_quoted(f, parts)?;
        } else {
            for (i, segment) in shown.iter().enumerate() {
                if i > 0 {
                    f.write_str("/")?;
                }
                f.write_str(segment)?;
            }
        }
        if self.entry.is_dir() {
            f.write_str("/")?;
        }
        Ok(())
    }
}

fn mtime(entry: &Entry) -> i64 {
    entry
        .current
        .as_ref()
        .map_or(entry.updated_at, |(_, m)| m.mtime_s)
}

pub fn entry_json(entry: &Entry) -> Value {
    json!({
        "path": entry.path.to_string(),
        "name": entry.path.name().unwrap_or(""),
        "kind": kind(entry.kind),
        "size": entry.size(),
        "sealed_size": entry.current.as_ref().map_or(0, |(v, _)| v.sealed_size),
        "mtime": mtime(entry),
        "version": entry.current.as_ref().map(|(v, _)| v.version),
        "versions": entry.version_count,
        "revision": entry.revision,
    })
}

/// `ls`: one entry per line (`-l`: size, mtime, versions, name), through one buffer: a
/// write per line cost a 10,000-entry listing a third of its time.
pub fn print_ls(entries: &[Entry], depth: usize, long: bool) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for entry in entries {
        let name = ShownName { entry, depth };
        if long {
            let size = if entry.is_dir() {
                "-".to_string()
            } else {
                format_size(entry.size())
            };
            let versions = if entry.is_dir() {
                "-".to_string()
            } else {
                format!("v{}", entry.version_count)
            };
            writeln!(
                out,
                "{size:>10}  {}  {versions:>4}  {name}",
                short_time(mtime(entry))
            )?;
        } else {
            writeln!(out, "{name}")?;
        }
    }
    out.flush()
}

pub use vault_core::units::plural;

/// Totals under a path, for `du`.
#[derive(Debug, Default)]
pub struct Totals {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    pub sealed_bytes: u64,
}

impl Totals {
    pub fn of(entries: &[Entry]) -> Totals {
        let mut t = Totals::default();
        for e in entries {
            if e.is_dir() {
                t.dirs += 1;
            } else {
                t.files += 1;
                t.bytes += e.size();
                // A chunked version counted whole: its list and every chunk it uses, shared
                // or not (what the space stores once is `vault quota`'s figure).
                t.sealed_bytes += e
                    .current
                    .as_ref()
                    .map_or(0, |(v, _)| v.sealed_size + v.chunk_bytes);
            }
        }
        t
    }
}

pub fn print_du(path: &str, t: &Totals, json_out: bool) -> anyhow::Result<()> {
    if json_out {
        let value = json!({
            "path": path, "files": t.files, "dirs": t.dirs,
            "bytes": t.bytes, "sealed_bytes": t.sealed_bytes,
        });
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        outln!(
            "{}  {}  ({}, {}; {} sealed, current versions only, shared chunks counted in each)",
            format_size(t.bytes),
            shown(path),
            plural(t.files, "file", "files"),
            plural(t.dirs, "directory", "directories"),
            format_size(t.sealed_bytes)
        )?;
    }
    Ok(())
}

pub fn print_quota(u: &Usage, json_out: bool) -> anyhow::Result<()> {
    if json_out {
        let value = json!({
            "used_bytes": u.used_bytes, "logical_bytes": u.logical_bytes,
            "quota_bytes": u.quota_bytes,
            "files": u.files, "dirs": u.dirs, "versions": u.versions,
            "trash_items": u.trash_items, "revision": u.revision,
        });
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        let pct = if u.quota_bytes == 0 {
            100.0
        } else {
            u.used_bytes as f64 * 100.0 / u.quota_bytes as f64
        };
        outln!(
            "used {} of {} ({pct:.1}%): {} of versions, each shared chunk stored once",
            format_size(u.used_bytes),
            format_size(u.quota_bytes),
            format_size(u.logical_bytes)
        )?;
        outln!(
            "{}, {}, {}, {} in the trash",
            plural(u.files, "file", "files"),
            plural(u.dirs, "directory", "directories"),
            plural(u.versions, "version", "versions"),
            plural(u.trash_items, "deletion", "deletions")
        )?;
        // Stored beyond what every version counted whole comes to: only chunks no version
        // uses any more (deleted files, dropped versions, an upload that never committed).
        if u.used_bytes > u.logical_bytes {
            outln!(
                "{} of it is chunks no version uses any more: the server's gc frees them \
                 after its grace period",
                format_size(u.used_bytes - u.logical_bytes)
            )?;
        }
    }
    Ok(())
}

pub fn print_versions(path: &str, v: &Versions, json_out: bool) -> anyhow::Result<()> {
    if json_out {
        let list: Vec<Value> = v
            .versions
            .iter()
            .map(|(info, meta)| {
                json!({
                    "version": info.version,
                    "current": info.version == v.current,
                    "size": meta.size,
                    "sealed_size": info.sealed_size,
                    "mtime": meta.mtime_s,
                    "created_at": info.created_at,
                    "generation": info.generation,
                })
            })
            .collect();
        let value = json!({ "path": path, "current": v.current, "versions": list });
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        for (info, meta) in &v.versions {
            let mark = if info.version == v.current { "*" } else { " " };
            outln!(
                "{mark} v{:<4} {:>10}  modified {}  uploaded {}",
                info.version,
                format_size(meta.size),
                short_time(meta.mtime_s),
                short_time(info.created_at)
            )?;
        }
    }
    Ok(())
}

pub fn print_trash(items: &[TrashEntry], json_out: bool) -> anyhow::Result<()> {
    if json_out {
        let list: Vec<Value> = items
            .iter()
            .map(|t| {
                json!({
                    "trash_id": t.item.trash_id,
                    "path": t.path.to_string(),
                    "kind": kind(t.item.kind),
                    "entries": t.item.entries,
                    "sealed_bytes": t.item.sealed_bytes,
                    "trashed_at": t.item.trashed_at,
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&list)?)?;
    } else if items.is_empty() {
        outln!("The trash is empty.")?;
    } else {
        for t in items {
            let slash = if t.item.kind == EntryKind::Dir {
                "/"
            } else {
                ""
            };
            outln!(
                "id {:<5}  {}  {:>10}  {}{slash}{}",
                t.item.trash_id,
                short_time(t.item.trashed_at),
                format_size(t.item.sealed_bytes),
                shown(&t.path.to_string()),
                if t.item.entries > 1 {
                    format!("  ({})", plural(t.item.entries, "entry", "entries"))
                } else {
                    String::new()
                }
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(short_time(0), "1970-01-01 00:00");
        assert_eq!(short_time(1_767_225_600), "2026-01-01 00:00");
        assert_eq!(short_time(951_782_400 + 3661), "2000-02-29 01:01");
        assert_eq!(short_time(-60), "1969-12-31 23:59");
    }
}

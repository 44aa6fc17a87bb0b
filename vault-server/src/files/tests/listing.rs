//! Listings and changes: names only, bounds on both sides, pages, and `changes since` a
//! revision with the resync after a purge.

use diesel::prelude::*;
use vault_proto::proto::{ChangeCursor, EntryInfo, ErrorCode, Request, Response};
use vault_proto::sizes::sealed_len;

use super::{FileCalls, P, fixture};
use crate::db::schema::namespaces;
use crate::files::info::PAGE_ENTRIES;
use crate::testing::{R, sealed_bytes};

#[tokio::test]
async fn a_listing_of_names_has_the_entries_without_their_versions() -> R<()> {
    let f = fixture()?;
    f.put("aaaa", &sealed_bytes(3, 1)).await?;
    f.put("aaaa", &sealed_bytes(3, 2)).await?;
    f.call(
        "alice",
        Request::Mkdir {
            ns: P,
            path: "bbbb/cccc".into(),
        },
    )
    .await?;
    f.put("bbbb/cccc/dddd", &sealed_bytes(5, 3)).await?;
    f.open("eeee", sealed_len(5)).await?; // unfinished: not listed either way
    for recursive in [false, true] {
        let full = f.ls("", recursive).await?;
        let names = f.list_all("", recursive, true).await?;
        let shown = |entries: &[EntryInfo]| {
            entries
                .iter()
                .map(|e| (e.id, e.path.clone(), e.kind, e.revision, e.updated_at))
                .collect::<Vec<_>>()
        };
        assert_eq!(shown(&names), shown(&full));
        assert!(
            names
                .iter()
                .all(|e| e.current.is_none() && e.version_count == 0)
        );
    }
    let paths: Vec<String> = f
        .list_all("", true, true)
        .await?
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(paths, ["aaaa", "bbbb", "bbbb/cccc", "bbbb/cccc/dddd"]);
    // A file's listing is the file itself, with its version either way.
    let file = f.list_all("aaaa", false, true).await?;
    assert_eq!(file.len(), 1);
    assert_eq!(file[0].version_count, 2);
    Ok(())
}

#[tokio::test]
async fn a_listing_can_be_bounded_on_both_sides() -> R<()> {
    let f = fixture()?;
    {
        let mut c = f.state.db.conn()?;
        let ns = crate::db::files::namespaces::personal_or_create(&mut c, f.id("alice"))?;
        for (i, path) in ["aa", "bb", "bb/xx", "cc", "dd"].into_iter().enumerate() {
            crate::db::files::entries::insert(&mut c, ns.id, path, "dir", 1 + i as i64, 0)?;
        }
    }
    let list = |recursive: bool, after: Option<&str>, before: Option<&str>| Request::List {
        ns: P,
        dir: "".into(),
        recursive,
        after: after.map(str::to_owned),
        before: before.map(str::to_owned),
        names_only: false,
    };
    let paths = |r: Response| match r {
        Response::Listing { entries, next } => {
            assert_eq!(next, None);
            entries.into_iter().map(|e| e.path).collect::<Vec<_>>()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(
        paths(f.call("alice", list(false, None, Some("k"))).await?),
        ["aa", "bb", "cc", "dd"]
    );
    assert_eq!(
        paths(f.call("alice", list(false, Some("aa"), Some("cc"))).await?),
        ["bb"]
    );
    assert_eq!(
        paths(f.call("alice", list(false, None, Some("bb"))).await?),
        ["aa"]
    );
    assert_eq!(
        paths(f.call("alice", list(true, Some("bb"), Some("cc"))).await?),
        ["bb/xx"]
    );
    assert_eq!(
        paths(f.call("alice", list(true, Some("k"), None)).await?),
        Vec::<String>::new()
    );
    let bad = f.call("alice", list(false, None, Some("A"))).await;
    assert_eq!(bad.err().map(|e| e.code), Some(ErrorCode::BadRequest));
    Ok(())
}

#[tokio::test]
async fn listings_and_changes_come_in_pages() -> R<()> {
    let f = fixture()?;
    let n = PAGE_ENTRIES + 5;
    {
        // Rows straight into the table: 1005 directories.
        let mut c = f.state.db.conn()?;
        let ns = crate::db::files::namespaces::personal_or_create(&mut c, f.id("alice"))?;
        for i in 0..n {
            let path = format!("d{:04}", i)
                .replace('0', "a")
                .replace('1', "b")
                .replace('8', "i")
                .replace('9', "j");
            crate::db::files::entries::insert(&mut c, ns.id, &path, "dir", 1 + i as i64, 0)?;
        }
        diesel::update(namespaces::table.find(ns.id))
            .set(namespaces::revision.eq(n as i64))
            .execute(&mut *c)?;
    }
    let first = match f
        .call(
            "alice",
            Request::List {
                ns: P,
                dir: "".into(),
                recursive: false,
                after: None,
                before: None,
                names_only: false,
            },
        )
        .await?
    {
        Response::Listing { entries, next } => {
            assert!(next.is_some());
            entries
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(first.len(), PAGE_ENTRIES);
    let all = f.ls("", false).await?;
    assert_eq!(all.len(), n);
    let mut sorted: Vec<&str> = all.iter().map(|e| e.path.as_str()).collect();
    sorted.dedup();
    assert_eq!(sorted.len(), n);

    let mut seen = 0;
    let mut after = None;
    loop {
        match f
            .call(
                "alice",
                Request::Changes {
                    ns: P,
                    since: 0,
                    after,
                },
            )
            .await?
        {
            Response::Changes { changes, next, .. } => {
                seen += changes.len();
                match next {
                    Some(c) => after = Some(c),
                    None => break,
                }
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seen, n);
    Ok(())
}

#[tokio::test]
async fn changes_since_a_revision_and_resync_after_a_purge() -> R<()> {
    let f = fixture()?;
    f.put("aa", &sealed_bytes(1, 1)).await?;
    f.put("bb", &sealed_bytes(1, 2)).await?;
    let rev = f.usage().await?.revision;
    let changes = |since: u64, after: Option<ChangeCursor>| {
        let f = &f;
        async move {
            match f
                .call(
                    "alice",
                    Request::Changes {
                        ns: P,
                        since,
                        after,
                    },
                )
                .await?
            {
                Response::Changes {
                    revision,
                    changes,
                    next,
                    resync,
                } => Ok::<_, Box<dyn std::error::Error>>((revision, changes, next, resync)),
                other => Err(format!("unexpected {other:?}").into()),
            }
        }
    };
    let (revision, none, next, resync) = changes(rev, None).await?;
    assert_eq!((revision, none.len(), next, resync), (rev, 0, None, false));

    // A new version of aa, a new file cc, bb to the trash; an unfinished upload is not a change.
    f.put("aa", &sealed_bytes(2, 1)).await?;
    f.put("cc", &sealed_bytes(1, 3)).await?;
    f.call(
        "alice",
        Request::Remove {
            ns: P,
            path: "bb".into(),
            recursive: false,
        },
    )
    .await?;
    f.open("pending", 17).await?;
    let (_, got, _, resync) = changes(rev, None).await?;
    let seen: Vec<(&str, bool)> = got
        .iter()
        .map(|c| (c.entry.path.as_str(), c.deleted))
        .collect();
    assert_eq!(seen, [("aa", false), ("cc", false), ("bb", true)]);
    assert!(!resync);
    assert_eq!(got[0].entry.current.as_ref().map(|v| v.version), Some(2));

    // Purging the trash forces a resync for anyone behind it, not after.
    f.call("alice", Request::TrashEmpty { ns: P }).await?;
    assert!(changes(rev, None).await?.3);
    let now = f.usage().await?.revision;
    assert!(!changes(now, None).await?.3);
    Ok(())
}

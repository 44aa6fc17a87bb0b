//! Folders and moves: `mkdir` with its parents, seen from a second session, and `move`
//! of a folder with everything under it.

use vault_proto::proto::{EntryInfo, EntryKind, ErrorCode, Rename, Request, Response};

use super::{FileCalls, P, fixture};
use crate::net::connection::SessionCtx;
use crate::testing::{R, code, sealed_bytes};

#[tokio::test]
async fn mkdir_creates_parents_and_two_clients_see_each_other() -> R<()> {
    let f = fixture()?;
    let r = f
        .call(
            "alice",
            Request::Mkdir {
                ns: P,
                path: "aa/bb/cc".into(),
            },
        )
        .await?;
    assert!(matches!(
        r,
        Response::Entry(EntryInfo {
            kind: EntryKind::Dir,
            ..
        })
    ));
    // An existing directory is fine and changes nothing.
    let rev = f.usage().await?.revision;
    f.call(
        "alice",
        Request::Mkdir {
            ns: P,
            path: "aa/bb".into(),
        },
    )
    .await?;
    assert_eq!(f.usage().await?.revision, rev);
    assert_eq!(f.ls("aa", false).await?.len(), 1);
    // A second session of the same user sees the same space.
    let other = SessionCtx {
        session_id: 99,
        ..f.alice().clone()
    };
    match f
        .serve(
            &other,
            Request::Stat {
                ns: P,
                path: "aa/bb/cc".into(),
            },
        )
        .await?
    {
        Response::Entry(e) => assert_eq!(e.kind, EntryKind::Dir),
        r => panic!("{r:?}"),
    }
    // The root always exists.
    match f
        .call(
            "alice",
            Request::Stat {
                ns: P,
                path: "".into(),
            },
        )
        .await?
    {
        Response::Entry(e) => assert_eq!(e.kind, EntryKind::Dir),
        r => panic!("{r:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn move_renames_a_dir_with_its_descendants() -> R<()> {
    let f = fixture()?;
    let a = sealed_bytes(5, 1);
    f.put("src/aa", &a).await?;
    f.put("src/sub/bb", &a).await?;
    f.call(
        "alice",
        Request::Mkdir {
            ns: P,
            path: "dst".into(),
        },
    )
    .await?;
    let rn = |from: &str, to: &str| Rename {
        from: from.into(),
        to: to.into(),
    };

    // Missing a descendant, wrong parents, into itself, existing or missing destination.
    let bad: Vec<(Vec<Rename>, ErrorCode)> = vec![
        (
            vec![rn("src", "dst/nn"), rn("src/aa", "dst/nn/aa")],
            ErrorCode::BadRequest,
        ),
        (
            vec![
                rn("src", "dst/nn"),
                rn("src/aa", "dst/zz/aa"),
                rn("src/sub", "dst/nn/sub"),
                rn("src/sub/bb", "dst/nn/sub/bb"),
            ],
            ErrorCode::BadRequest,
        ),
        (vec![rn("src", "src/sub/x")], ErrorCode::BadRequest),
        (vec![rn("src", "dst")], ErrorCode::Conflict),
        (vec![rn("src/aa", "nope/aa")], ErrorCode::NotFound),
        (vec![rn("nope", "dst/x")], ErrorCode::NotFound),
    ];
    for (renames, want) in bad {
        let r = f
            .call(
                "alice",
                Request::Move {
                    ns: P,
                    renames: renames.clone(),
                },
            )
            .await;
        assert_eq!(code(r), want, "{renames:?}");
    }

    let before = f.usage().await?.revision;
    let moved = f
        .call(
            "alice",
            Request::Move {
                ns: P,
                renames: vec![
                    rn("src", "dst/nn"),
                    rn("src/sub/bb", "dst/nn/sub/cc"),
                    rn("src/aa", "dst/nn/aa"),
                    rn("src/sub", "dst/nn/sub"),
                ],
            },
        )
        .await?;
    let Response::Entry(moved) = moved else {
        panic!("{moved:?}")
    };
    assert_eq!(moved.path, "dst/nn");
    let paths: Vec<String> = f.ls("", true).await?.into_iter().map(|e| e.path).collect();
    assert_eq!(
        paths,
        ["dst", "dst/nn", "dst/nn/aa", "dst/nn/sub", "dst/nn/sub/cc"]
    );
    assert_eq!(f.get("dst/nn/sub/cc", None, 0).await?, a);
    assert_eq!(f.usage().await?.revision, before + 1);
    Ok(())
}

//! Versions: kept up to the retention, listed, downloaded and restored.

use std::sync::Arc;

use vault_proto::proto::{ErrorCode, Request, Response};

use super::{FileCalls, P, fixture_with};
use crate::files::download;
use crate::testing::{R, code, err, sealed_bytes};

#[tokio::test]
async fn versions_are_kept_up_to_the_retention_and_restorable() -> R<()> {
    let f = fixture_with(|c| c.version_retention = 3, |s| Arc::new(s))?;
    let contents: Vec<Vec<u8>> = (0..5).map(|i| sealed_bytes(10 + i, i as u8)).collect();
    for c in &contents {
        f.put("doc", c).await?;
    }
    let (current, kept) = match f
        .call(
            "alice",
            Request::Versions {
                ns: P,
                path: "doc".into(),
            },
        )
        .await?
    {
        Response::Versions {
            current, versions, ..
        } => (current, versions),
        other => panic!("{other:?}"),
    };
    assert_eq!(current, 5);
    assert_eq!(
        kept.iter().map(|v| v.version).collect::<Vec<_>>(),
        [5, 4, 3]
    );
    assert_eq!(f.deleted_blob_count()?, 2);
    let kept_bytes: u64 = contents[2..].iter().map(|c| c.len() as u64).sum();
    assert_eq!(f.usage().await?.used_bytes, kept_bytes);

    // Restore makes version 3 current without a new version.
    let entry = match f
        .call(
            "alice",
            Request::Restore {
                ns: P,
                path: "doc".into(),
                version: 3,
            },
        )
        .await?
    {
        Response::Entry(e) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(entry.current.map(|v| v.version), Some(3));
    assert_eq!(entry.version_count, 3);
    assert_eq!(f.get("doc", None, 0).await?, contents[2]);
    assert_eq!(f.get("doc", Some(5), 0).await?, contents[4]);
    let r = download::prepare(&f.state, f.alice(), &P, "doc".into(), Some(1), 0).await;
    assert_eq!(err(r).code, ErrorCode::NotFound);
    let r = f
        .call(
            "alice",
            Request::Restore {
                ns: P,
                path: "doc".into(),
                version: 1,
            },
        )
        .await;
    assert_eq!(code(r), ErrorCode::NotFound);
    Ok(())
}

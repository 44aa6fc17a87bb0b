//! Files sent with messages: `chat_send` with an attachment, `chat_get`,
//! `chat_file_download`, for whom and until when.

use vault_proto::proto::{
    Attachment, ErrorCode, NsRef, Request, Response, Rotation, SealedMessage,
};

use super::{ChatCalls, direct, envelope, fixture, to_group, user};
use crate::chat::files;
use crate::db;
use crate::testing::{R, err};

/// Arbitrary bytes of the sealed length of a `plain`-byte file.
fn sealed_file(plain: u64, seed: u8) -> Vec<u8> {
    (0..vault_proto::sizes::sealed_len(plain))
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed))
        .collect()
}

fn attached(mut message: SealedMessage, path: &str, version: u64) -> SealedMessage {
    message.attachment = Some(Attachment {
        path: path.into(),
        version,
    });
    message
}

#[tokio::test]
async fn an_attachment_must_be_a_live_file_of_the_senders_space() -> R<()> {
    let f = fixture()?;
    f.befriend("alice", "bob").await?;
    let v = f
        .put_file("alice", "alicefile", &sealed_file(10, 1))
        .await?;
    f.put_file("bob", "bobfile", &sealed_file(10, 2)).await?;
    for (path, version, why) in [
        ("nosuchfile", v, "no file there"),
        ("alicefile", v + 1, "a version not kept"),
        ("bobfile", 1, "the recipient's file"),
    ] {
        let e = err(f
            .send(
                "alice",
                attached(direct("alice", "bob", "x"), path, version),
            )
            .await);
        assert_eq!(e.code, ErrorCode::BadRequest, "{why}: {e}");
        assert!(e.message.contains("upload it first"), "{why}: {e}");
    }
    assert_eq!(f.stored()?, (0, 0), "a refused message leaves nothing");
    assert_eq!(f.attachments()?, 0);
    f.send(
        "alice",
        attached(direct("alice", "bob", "x"), "alicefile", v),
    )
    .await?;
    assert_eq!((f.stored()?, f.attachments()?), ((1, 2), 1));
    Ok(())
}

#[tokio::test]
async fn a_sent_file_is_readable_by_the_messages_readers_until_the_sender_removes_it() -> R<()> {
    let f = fixture()?;
    f.befriend("alice", "bob").await?;
    let sealed = sealed_file(vault_proto::sizes::CHUNK_LEN as u64 + 100, 3);
    let v = f.put_file("alice", "doc", &sealed).await?;
    let id = f
        .send("alice", attached(direct("alice", "bob", "here"), "doc", v))
        .await?;
    let plain = f.send("alice", direct("alice", "bob", "no file")).await?;

    // chat_get: the message, with its attachment, for its sender and reader only.
    for who in ["alice", "bob"] {
        match f.ok(who, Request::ChatGet { id }).await? {
            Response::ChatMessages { messages } => {
                assert_eq!(messages.len(), 1);
                assert_eq!(messages[0].id, id);
                let a = messages[0].message.attachment.clone().expect("attachment");
                assert_eq!((a.path.as_str(), a.version), ("doc", v));
            }
            other => return Err(format!("unexpected {other:?}").into()),
        }
    }
    let e = err(f.call("carol", Request::ChatGet { id }).await);
    assert_eq!(e.code, ErrorCode::NotFound, "{e}");

    // The download: the recipient and the sender, nobody else.
    assert_eq!(f.fetch("bob", id).await?, sealed);
    assert_eq!(f.fetch("alice", id).await?, sealed);
    for who in ["carol", "dave"] {
        let e = err(f.fetch(who, id).await);
        assert_eq!(e.code, ErrorCode::NotFound, "{who}: {e}");
    }
    let e = err(f.fetch("bob", plain).await);
    assert!(e.message.contains("carries no file"), "{e}");
    // A later chunk starts where the sealed chunk does.
    let (header, _) = files::prepare(&f.state, &f.who("bob").session, id, 1).await?;
    let Response::Download { offset, .. } = header else {
        return Err(format!("unexpected {header:?}").into());
    };
    assert_eq!(Some(offset), vault_proto::sizes::sealed_chunk_offset(1));

    // The sender removes the file: the message stays, the file is gone.
    crate::files::dispatch(
        &f.state,
        &f.who("alice").session,
        Request::Remove {
            ns: NsRef::Personal,
            path: "doc".into(),
            recursive: false,
        },
    )
    .await?;
    let e = err(f.fetch("bob", id).await);
    assert_eq!(e.code, ErrorCode::NotFound, "{e}");
    assert!(
        e.message.contains("the sender has removed this file"),
        "{e}"
    );
    assert_eq!(f.history("bob", user("alice"), 10, None).await?.len(), 2);
    Ok(())
}

#[tokio::test]
async fn a_group_attachment_is_readable_by_members_and_goes_with_its_messages() -> R<()> {
    let f = fixture()?;
    let id = f.team("alice", "team", &["bob", "carol"]).await?;
    let sealed = sealed_file(5, 4);
    let v = f.put_file("bob", "shared", &sealed).await?;
    let msg = f
        .send(
            "bob",
            attached(to_group("bob", "team", id, 0, "file"), "shared", v),
        )
        .await?;
    for who in ["alice", "bob", "carol"] {
        assert_eq!(f.fetch(who, msg).await?, sealed, "{who}");
    }
    let e = err(f.fetch("dave", msg).await);
    assert_eq!(e.code, ErrorCode::NotFound, "{e}");
    // A member removed from the group fetches nothing more of it.
    f.ok(
        "alice",
        Request::GroupRemove {
            group: "team".into(),
            username: "carol".into(),
            rotation: Some(Rotation {
                generation: 1,
                envelopes: vec![envelope("alice", 1), envelope("bob", 1)],
            }),
        },
    )
    .await?;
    let e = err(f.fetch("carol", msg).await);
    assert_eq!(e.code, ErrorCode::Forbidden, "{e}");
    assert_eq!(f.fetch("bob", msg).await?, sealed);

    // A direct one too; deleting the group and then the accounts leaves no attachment row.
    f.befriend("alice", "dave").await?;
    let w = f.put_file("alice", "mine", &sealed_file(1, 5)).await?;
    f.send("alice", attached(direct("alice", "dave", "d"), "mine", w))
        .await?;
    assert_eq!(f.attachments()?, 2);
    f.ok(
        "alice",
        Request::GroupDelete {
            group: "team".into(),
        },
    )
    .await?;
    assert_eq!(f.attachments()?, 1);
    {
        let mut conn = f.state.db.conn()?;
        db::chat::delete_user(&mut conn, f.id("alice"))?;
        assert_eq!(f.attachments()?, 1, "dave still has the message");
        db::chat::delete_user(&mut conn, f.id("dave"))?;
    }
    assert_eq!((f.stored()?, f.attachments()?), ((0, 0), 0));
    Ok(())
}

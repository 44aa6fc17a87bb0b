//! Join codes: their limits, a hash of their secret, and one answer alike to a wrong
//! secret, an unknown, used-up or expired code, or one whose maker was removed.

use diesel::prelude::*;
use vault_proto::proto::groups::{MAX_INVITE_TTL_S, MAX_INVITE_USES};
use vault_proto::proto::{ErrorCode, GroupRole, Request, Response, SecretBytes};

use super::{GroupCalls, env, fixture, rotation};
use crate::db::schema::group_invites;
use crate::db::{self, groups};
use crate::testing::{R, code, err};

#[tokio::test]
async fn join_codes_expire_run_out_and_answer_alike_to_a_wrong_secret() -> R<()> {
    let f = fixture()?;
    f.create("alice", "team").await?;
    f.rotate("alice", "team", rotation(0, &["alice"])).await?;
    f.add("alice", "team", "carol", 1).await?;
    let auth = [5u8; 32];

    assert_eq!(
        code(f.invite("carol", "team", &auth, 1).await),
        ErrorCode::Forbidden
    );
    let bad = |uses: u32, expires_s: u64, sealed: usize, auth: usize| Request::GroupInviteCreate {
        group: "team".into(),
        auth: SecretBytes::new(vec![1; auth]),
        sealed_keys: vec![0; sealed].into(),
        uses,
        expires_s,
    };
    for (request, want) in [
        (bad(0, 60, 10, 32), ErrorCode::BadRequest),
        (bad(MAX_INVITE_USES + 1, 60, 10, 32), ErrorCode::BadRequest),
        (bad(1, 0, 10, 32), ErrorCode::BadRequest),
        (bad(1, MAX_INVITE_TTL_S + 1, 10, 32), ErrorCode::BadRequest),
        (bad(1, 60, 64 * 1024 + 1, 32), ErrorCode::TooLarge),
        (bad(1, 60, 10, 0), ErrorCode::BadRequest),
    ] {
        assert_eq!(code(f.call("alice", request).await), want);
    }

    let id = f.invite("alice", "team", &auth, 2).await?;
    // The server keeps a hash of the auth part, never the part itself.
    {
        let mut conn = f.state.db.conn()?;
        let stored: Vec<u8> = group_invites::table
            .find(id)
            .select(group_invites::auth_hash)
            .get_result(&mut *conn)?;
        assert_ne!(stored, auth.to_vec());
        assert_eq!(stored.len(), 32);
    }
    let open = |invite_id: i64, auth: &[u8]| Request::GroupInviteOpen {
        invite_id,
        auth: SecretBytes::new(auth.to_vec()),
    };
    let wrong = err(f.call("dave", open(id, &[6; 32])).await);
    let unknown = err(f.call("dave", open(id + 1000, &auth)).await);
    assert_eq!(wrong, unknown);
    assert_eq!(wrong.code, ErrorCode::Forbidden);
    assert!(
        wrong.message.contains("invalid, expired or used up"),
        "{wrong}"
    );
    match f.ok("dave", open(id, &auth)).await? {
        Response::InviteOpened(info) => {
            assert_eq!(info.group, "team");
            assert_eq!(info.sealed_keys.as_slice(), b"sealed group keys");
        }
        other => panic!("{other:?}"),
    }
    // A member is told so (once the code is proven).
    assert_eq!(
        code(f.call("carol", open(id, &auth)).await),
        ErrorCode::Conflict
    );

    // Joining: only one's own envelopes, of generations that exist.
    assert_eq!(
        code(f.join("dave", id, &auth, vec![env("carol", 0)]).await),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(f.join("dave", id, &auth, vec![env("dave", 1)]).await),
        ErrorCode::BadRequest
    );
    assert_eq!(
        err(f.join("dave", id, &[6; 32], vec![env("dave", 0)]).await),
        wrong
    );
    match f.join("dave", id, &auth, vec![env("dave", 0)]).await? {
        Response::GroupJoined { name, .. } => assert_eq!(name, "team"),
        other => panic!("{other:?}"),
    }
    assert_eq!(f.keys("dave", "team").await?, vec![0]);
    assert_eq!(
        code(f.join("dave", id, &auth, vec![]).await),
        ErrorCode::Conflict
    );
    // A code with fewer envelopes than generations is fine: healing brings the rest.
    f.join("erin", id, &auth, vec![]).await?;
    assert!(!f.info("erin", "team").await?.summary.has_key);
    // Used up: the same answer as a wrong secret.
    assert_eq!(err(f.join("frank", id, &auth, vec![]).await), wrong);
    assert_eq!(err(f.call("frank", open(id, &auth)).await), wrong);

    // Expired: the same answer.
    let id = f.invite("alice", "team", &auth, 5).await?;
    {
        let mut conn = f.state.db.conn()?;
        diesel::update(group_invites::table.find(id))
            .set(group_invites::expires_at.eq(db::now() - 1))
            .execute(&mut *conn)?;
    }
    assert_eq!(err(f.call("frank", open(id, &auth)).await), wrong);
    assert_eq!(err(f.join("frank", id, &auth, vec![]).await), wrong);
    // The server's housekeeping deletes it.
    {
        let mut conn = f.state.db.conn()?;
        assert_eq!(groups::delete_expired_invites(&mut conn, db::now())?, 1);
        assert!(groups::invite(&mut conn, id)?.is_none());
    }

    // A code made by a manager who is removed goes with them.
    f.add("alice", "team", "hank", 1).await?;
    f.set_role("alice", "team", "hank", GroupRole::Manager)
        .await?;
    let id = f.invite("hank", "team", &auth, 5).await?;
    f.remove("alice", "team", "hank", None).await?;
    assert_eq!(err(f.call("frank", open(id, &auth)).await), wrong);
    Ok(())
}

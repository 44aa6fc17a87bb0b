//! Presence across the instances of a deployment (migration `2026-12-06-000012_presence`):
//! `instances` has a row per running server instance, whose `beat_at` it refreshes every
//! [`BEAT_S`] seconds; `presence` has a row per user with a live subscription on an
//! instance. A user is online while a row of theirs belongs to an instance that beat in
//! the last [`STALE_S`] seconds. [`sweep`] removes the instances that stopped beating (a
//! crash, a kill, a lost network) with their rows.
//!
//! [`join`] and [`leave`] take the lock of the user's row first (`chat::lock_users`), so
//! that when two instances change one user's presence at once they run one after the
//! other and exactly one of them sees the change from offline to online, or back.

use std::collections::HashSet;

use diesel::prelude::*;

use super::schema::{instances, presence};
use super::{DbConn, DbResult};

/// How often an instance refreshes its row.
pub const BEAT_S: i64 = 10;
/// An instance whose row is older than this is taken as stopped: its users are offline.
pub const STALE_S: i64 = 30;

/// At most this many ids in one `IN (…)` list (SQLite's parameter limit).
const CHUNK: usize = 500;

/// Records that `instance` runs at `now`; returns whether its row was there (false the
/// first time, and after another instance swept it).
pub fn beat(conn: &mut DbConn, instance: &str, now: i64) -> DbResult<bool> {
    let updated = diesel::update(instances::table.find(instance))
        .set(instances::beat_at.eq(now))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(instances::table)
            .values((instances::id.eq(instance), instances::beat_at.eq(now)))
            .execute(conn)?;
    }
    Ok(updated > 0)
}

/// Whether `user_id` has a live subscription on an instance that runs.
pub fn is_online(conn: &mut DbConn, user_id: i64, now: i64) -> DbResult<bool> {
    let rows: i64 = presence::table
        .filter(presence::user_id.eq(user_id))
        .filter(
            presence::instance.eq_any(
                instances::table
                    .filter(instances::beat_at.ge(now - STALE_S))
                    .select(instances::id),
            ),
        )
        .count()
        .get_result(conn)?;
    Ok(rows > 0)
}

/// Which of `user_ids` are online.
pub fn online_among(conn: &mut DbConn, user_ids: &[i64], now: i64) -> DbResult<HashSet<i64>> {
    let mut online = HashSet::new();
    for ids in user_ids.chunks(CHUNK) {
        let found: Vec<i64> = presence::table
            .filter(presence::user_id.eq_any(ids))
            .filter(
                presence::instance.eq_any(
                    instances::table
                        .filter(instances::beat_at.ge(now - STALE_S))
                        .select(instances::id),
                ),
            )
            .select(presence::user_id)
            .load(conn)?;
        online.extend(found);
    }
    Ok(online)
}

/// Records that `user_id` has a subscription on `instance`; returns whether they were
/// offline everywhere before (they just came online). Run it in a transaction.
pub fn join(conn: &mut DbConn, instance: &str, user_id: i64, now: i64) -> DbResult<bool> {
    super::chat::lock_users(conn, &[user_id])?;
    beat(conn, instance, now)?;
    let was_online = is_online(conn, user_id, now)?;
    let here: i64 = presence::table
        .find((user_id, instance))
        .count()
        .get_result(conn)?;
    if here == 0 {
        diesel::insert_into(presence::table)
            .values((
                presence::user_id.eq(user_id),
                presence::instance.eq(instance),
            ))
            .execute(conn)?;
    }
    Ok(!was_online)
}

/// Records that `user_id`'s last subscription on `instance` closed; returns whether they
/// are now offline everywhere. Run it in a transaction.
pub fn leave(conn: &mut DbConn, instance: &str, user_id: i64, now: i64) -> DbResult<bool> {
    super::chat::lock_users(conn, &[user_id])?;
    diesel::delete(presence::table.find((user_id, instance))).execute(conn)?;
    Ok(!is_online(conn, user_id, now)?)
}

/// Removes `instances` (all but those that beat in the last [`STALE_S`] seconds, or the
/// one named, stopping) and their presence rows; returns the users who are thereby offline
/// everywhere. Run it in a transaction.
fn remove(conn: &mut DbConn, gone: &[String], now: i64) -> DbResult<Vec<i64>> {
    let mut users: Vec<i64> = Vec::new();
    for ids in gone.chunks(CHUNK) {
        users.extend(
            presence::table
                .filter(presence::instance.eq_any(ids))
                .select(presence::user_id)
                .load::<i64>(conn)?,
        );
        diesel::delete(presence::table.filter(presence::instance.eq_any(ids))).execute(conn)?;
        diesel::delete(instances::table.filter(instances::id.eq_any(ids))).execute(conn)?;
    }
    users.sort_unstable();
    users.dedup();
    let still = online_among(conn, &users, now)?;
    users.retain(|u| !still.contains(u));
    Ok(users)
}

/// Removes the instances that have not beaten for [`STALE_S`] seconds, and their rows;
/// returns the users who are thereby offline everywhere.
pub fn sweep(conn: &mut DbConn, now: i64) -> DbResult<Vec<i64>> {
    let stopped: Vec<String> = instances::table
        .filter(instances::beat_at.lt(now - STALE_S))
        .select(instances::id)
        .load(conn)?;
    remove(conn, &stopped, now)
}

/// Removes `instance`, stopping, and its rows; returns the users who are thereby offline
/// everywhere.
pub fn stop(conn: &mut DbConn, instance: &str, now: i64) -> DbResult<Vec<i64>> {
    remove(conn, &[instance.to_owned()], now)
}

/// For a deleted account: its presence rows.
pub fn delete_user(conn: &mut DbConn, user_id: i64) -> DbResult<()> {
    diesel::delete(presence::table.filter(presence::user_id.eq(user_id))).execute(conn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Db, transaction};
    use crate::testing::{R, add_user, fresh_postgres_database};

    fn db(dir: &tempfile::TempDir) -> R<Db> {
        let url = fresh_postgres_database("chat")?
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("x.db").display()));
        Ok(Db::open(&url)?)
    }

    fn join_at(c: &mut DbConn, instance: &str, user: i64, now: i64) -> R<bool> {
        Ok(transaction(c, |c| join(c, instance, user, now))?)
    }

    fn leave_at(c: &mut DbConn, instance: &str, user: i64, now: i64) -> R<bool> {
        Ok(transaction(c, |c| leave(c, instance, user, now))?)
    }

    #[test]
    fn a_user_is_online_while_one_instance_holds_them() -> R<()> {
        let dir = tempfile::tempdir()?;
        let db = db(&dir)?;
        let mut c = db.conn()?;
        let alice = add_user(&mut c, "alice", b"pk", 1 << 20)?.id;
        let bob = add_user(&mut c, "bob", b"pk", 1 << 20)?.id;
        let t = 1_000_000;
        assert!(!is_online(&mut c, alice, t)?);
        assert!(join_at(&mut c, "a", alice, t)?, "first: came online");
        assert!(
            !join_at(&mut c, "b", alice, t)?,
            "second instance: already online"
        );
        assert!(!join_at(&mut c, "b", alice, t)?, "again on b: no change");
        assert!(is_online(&mut c, alice, t)?);
        assert_eq!(
            online_among(&mut c, &[alice, bob], t)?,
            HashSet::from([alice])
        );
        assert!(!leave_at(&mut c, "a", alice, t)?, "still on b");
        assert!(is_online(&mut c, alice, t)?);
        assert!(leave_at(&mut c, "b", alice, t)?, "gone from both: offline");
        assert!(!is_online(&mut c, alice, t)?);
        Ok(())
    }

    #[test]
    fn an_instance_that_stops_beating_takes_its_users_offline_and_is_swept() -> R<()> {
        let dir = tempfile::tempdir()?;
        let db = db(&dir)?;
        let mut c = db.conn()?;
        let alice = add_user(&mut c, "alice", b"pk", 1 << 20)?.id;
        let bob = add_user(&mut c, "bob", b"pk", 1 << 20)?.id;
        let t = 1_000_000;
        join_at(&mut c, "crashed", alice, t)?;
        join_at(&mut c, "crashed", bob, t)?;
        join_at(&mut c, "running", bob, t)?;
        let later = t + STALE_S + 1;
        assert!(beat(&mut c, "running", later)?, "its row was there");
        assert!(
            !is_online(&mut c, alice, later)?,
            "only on a silent instance"
        );
        assert!(is_online(&mut c, bob, later)?);
        assert!(
            join_at(&mut c, "running", alice, later)?,
            "a silent instance's rows do not count: she comes online again"
        );
        leave_at(&mut c, "running", alice, later)?;
        assert_eq!(
            transaction(&mut c, |c| sweep(c, later))?,
            vec![alice],
            "bob is still on the running instance"
        );
        assert_eq!(transaction(&mut c, |c| sweep(c, later))?, Vec::<i64>::new());
        assert_eq!(
            transaction(&mut c, |c| stop(c, "running", later))?,
            vec![bob]
        );
        assert!(!is_online(&mut c, bob, later)?);
        assert!(
            !beat(&mut c, "crashed", later)?,
            "swept: it must join its users again"
        );
        Ok(())
    }
}

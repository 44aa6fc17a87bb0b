//! The key work a member's client can do for the others (`key_tasks`, and the count in
//! `LoggedIn`): for every group of the caller, the first key if the group has none; a
//! new generation if a member was removed without one and the caller holds the key in
//! force; otherwise an envelope of each generation the caller holds for every member who
//! lacks it (key healing).

use std::collections::{BTreeSet, HashMap};

use vault_proto::proto::{ByteBuf, KeyTask, UserKey};

use crate::db::groups::{self, Group, MemberUser};
use crate::db::{DbConn, DbResult};

/// Which generations each member (by user id) holds an envelope of.
pub type Held = HashMap<i64, BTreeSet<u32>>;

/// A stored generation as the wire's `u32` (a negative or huge one is never stored).
pub fn generation(stored: i64) -> u32 {
    u32::try_from(stored).unwrap_or(u32::MAX)
}

/// The generations held in each of `group_ids`, by group and member.
pub fn held_in(conn: &mut DbConn, group_ids: &[i64]) -> DbResult<HashMap<i64, Held>> {
    let mut out: HashMap<i64, Held> = HashMap::new();
    for (group, user, g) in groups::held(conn, group_ids)? {
        out.entry(group)
            .or_default()
            .entry(user)
            .or_default()
            .insert(generation(g));
    }
    Ok(out)
}

fn user_key(m: &MemberUser) -> UserKey {
    UserKey {
        username: m.username.clone(),
        public_key: ByteBuf::from(m.public_key.clone()),
    }
}

/// The tasks `caller` can do for `group`, whose members and held generations are given.
pub fn for_group(caller: i64, group: &Group, members: &[MemberUser], held: &Held) -> Vec<KeyTask> {
    let all = || members.iter().map(user_key).collect();
    let Some(current) = group.key_generation.map(generation) else {
        return vec![KeyTask::FirstKey {
            group_id: group.id,
            group: group.name.clone(),
            members: all(),
        }];
    };
    let none = BTreeSet::new();
    let mine = held.get(&caller).unwrap_or(&none);
    if group.needs_rotation && mine.contains(&current) {
        return vec![KeyTask::Rotate {
            group_id: group.id,
            group: group.name.clone(),
            next_generation: current.saturating_add(1),
            members: all(),
        }];
    }
    members
        .iter()
        .filter(|m| m.member.user_id != caller)
        .filter_map(|m| {
            let theirs = held.get(&m.member.user_id).unwrap_or(&none);
            let missing: Vec<u32> = mine.difference(theirs).copied().collect();
            (!missing.is_empty()).then(|| KeyTask::Wrap {
                group_id: group.id,
                group: group.name.clone(),
                member: user_key(m),
                generations: missing,
            })
        })
        .collect()
}

/// Every task `user_id` can do, group by group (by name).
pub fn for_user(conn: &mut DbConn, user_id: i64) -> DbResult<Vec<KeyTask>> {
    let groups: Vec<Group> = groups::memberships(conn, user_id)?
        .into_iter()
        .map(|(g, _)| g)
        .collect();
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = groups.iter().map(|g| g.id).collect();
    let held = held_in(conn, &ids)?;
    let empty = Held::new();
    let mut tasks = Vec::new();
    for group in &groups {
        let members = groups::members(conn, group.id)?;
        let held = held.get(&group.id).unwrap_or(&empty);
        tasks.extend(for_group(user_id, group, &members, held));
    }
    Ok(tasks)
}

/// How many tasks `user_id` can do (`LoggedIn.key_tasks`).
pub fn key_task_count(conn: &mut DbConn, user_id: i64) -> DbResult<u32> {
    Ok(u32::try_from(for_user(conn, user_id)?.len()).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::groups::Member;

    fn member(user_id: i64, name: &str) -> MemberUser {
        MemberUser {
            member: Member {
                group_id: 1,
                user_id,
                role: "member".into(),
                joined_at: 0,
            },
            username: name.into(),
            public_key: vec![user_id as u8; 4],
            locked: false,
        }
    }

    fn group(key_generation: Option<i64>, needs_rotation: bool) -> Group {
        Group {
            id: 1,
            name: "team".into(),
            key_generation,
            needs_rotation,
            created_at: 0,
        }
    }

    fn held(pairs: &[(i64, &[u32])]) -> Held {
        pairs
            .iter()
            .map(|(u, gs)| (*u, gs.iter().copied().collect()))
            .collect()
    }

    #[test]
    fn a_group_without_a_key_asks_any_member_for_the_first() {
        let members = [member(1, "alice"), member(2, "bob")];
        for caller in [1, 2] {
            let tasks = for_group(caller, &group(None, false), &members, &Held::new());
            match tasks.as_slice() {
                [KeyTask::FirstKey { members, .. }] => assert_eq!(members.len(), 2),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_pending_rotation_goes_to_a_member_with_the_key_in_force() {
        let members = [member(1, "alice"), member(2, "bob")];
        let h = held(&[(1, &[0, 1]), (2, &[0])]);
        match for_group(1, &group(Some(1), true), &members, &h).as_slice() {
            [
                KeyTask::Rotate {
                    next_generation: 2,
                    members,
                    ..
                },
            ] => assert_eq!(members.len(), 2),
            other => panic!("{other:?}"),
        }
        // Bob lacks generation 1: he cannot rotate, and has nothing to wrap for alice.
        assert!(for_group(2, &group(Some(1), true), &members, &h).is_empty());
    }

    #[test]
    fn members_missing_generations_get_what_the_caller_holds() {
        let members = [member(1, "alice"), member(2, "bob"), member(3, "carol")];
        let h = held(&[(1, &[0, 1]), (2, &[1]), (3, &[0, 1])]);
        match for_group(1, &group(Some(1), false), &members, &h).as_slice() {
            [
                KeyTask::Wrap {
                    member,
                    generations,
                    ..
                },
            ] => {
                assert_eq!(member.username, "bob");
                assert_eq!(generations, &[0]);
            }
            other => panic!("{other:?}"),
        }
        // Bob holds only generation 1, which everyone has: nothing for him to do.
        assert!(for_group(2, &group(Some(1), false), &members, &h).is_empty());
    }
}

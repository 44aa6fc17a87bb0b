//! The requests that manage groups: create, list, info, members, add, remove and leave
//! (with the next key generation, or with a rotation left pending for the next keyed
//! member's client), roles, rename and delete.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use vault_proto::units::plural;

use vault_proto::proto::{
    ApiError, ByteBuf, GroupDetails, GroupRole, GroupSummary, MemberInfo, NewEnvelope, Response,
    Rotation,
};

use super::access::{self, role_of};
use super::envelopes::{self, Checked};
use super::tasks::{self, Held, generation};
use super::{Caller, change, view};
use crate::db::groups::{self, Group, MemberUser};
use crate::db::{self, DbConn, users};
use crate::error::Failure;
use crate::state::ServerState;

fn summary(
    group: &Group,
    role: GroupRole,
    members: usize,
    held: &Held,
    user_id: i64,
) -> GroupSummary {
    GroupSummary {
        id: group.id,
        name: group.name.clone(),
        role,
        members: members as u64,
        generation: group.key_generation.map(generation),
        has_key: view::has_key(group, held, user_id),
    }
}

/// The caller's name and current public key, written with the envelopes they send.
pub(super) fn signer(conn: &mut DbConn, caller: &Caller) -> Result<(String, Vec<u8>), Failure> {
    let user = users::by_id(conn, caller.user_id())?
        .ok_or_else(|| ApiError::forbidden("this account no longer exists"))?;
    Ok((user.username, user.public_key))
}

pub async fn create(state: &ServerState, caller: &Caller, raw: &str) -> Result<Response, ApiError> {
    let name = access::group_name(raw)?;
    let quota = i64::try_from(state.config.groups.default_quota.0).unwrap_or(i64::MAX);
    let caller = caller.clone();
    super::write(state, move |c| {
        let group = change::create(c, &name, caller.user_id(), quota, db::now())?;
        caller.audit(
            c,
            "group.create",
            None,
            &format!("created group {name} (id {}) as its owner", group.id),
        )?;
        Ok(Response::GroupCreated {
            group_id: group.id,
            name,
        })
    })
    .await
}

pub async fn list(state: &ServerState, caller: &Caller) -> Result<Response, ApiError> {
    let user = caller.user_id();
    super::read(state, move |c| {
        let rows = groups::memberships(c, user)?;
        let ids: Vec<i64> = rows.iter().map(|(g, _)| g.id).collect();
        let counts: HashMap<i64, i64> = groups::member_counts(c, &ids)?.into_iter().collect();
        let held = tasks::held_in(c, &ids)?;
        let empty = Held::new();
        let groups = rows
            .iter()
            .map(|(g, m)| {
                let count = counts.get(&g.id).map_or(0, |n| (*n).max(0) as usize);
                let held = held.get(&g.id).unwrap_or(&empty);
                Ok(summary(g, role_of(m)?, count, held, user))
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(Response::Groups { groups })
    })
    .await
}

pub async fn info(state: &ServerState, caller: &Caller, raw: &str) -> Result<Response, ApiError> {
    let (raw, user) = (raw.to_owned(), caller.user_id());
    super::read(state, move |c| {
        let a = access::member(c, &raw, user, false)?;
        let v = view::load(c, a.group)?;
        let me = v.member(user).map(|m| m.has_key).unwrap_or(false);
        Ok(Response::GroupInfo(GroupDetails {
            summary: GroupSummary {
                id: v.group.id,
                name: v.group.name.clone(),
                role: a.role,
                members: v.members.len() as u64,
                generation: v.generation(),
                has_key: me,
            },
            created_at: v.group.created_at,
            waiting: v.waiting().count() as u64,
            rotation_pending: v.group.needs_rotation,
            used_bytes: v.used_bytes.max(0) as u64,
            quota_bytes: v.quota_bytes.max(0) as u64,
        }))
    })
    .await
}

pub async fn members(
    state: &ServerState,
    caller: &Caller,
    raw: &str,
) -> Result<Response, ApiError> {
    let (raw, user) = (raw.to_owned(), caller.user_id());
    super::read(state, move |c| {
        let a = access::member(c, &raw, user, false)?;
        let v = view::load(c, a.group)?;
        let generation = v.generation();
        let members = v
            .members
            .into_iter()
            .map(|m| MemberInfo {
                username: m.user.username,
                role: m.role,
                has_key: m.has_key,
                joined_at: m.user.member.joined_at,
                public_key: ByteBuf::from(m.user.public_key),
            })
            .collect();
        Ok(Response::GroupMembers {
            group_id: v.group.id,
            generation,
            members,
        })
    })
    .await
}

/// `user` by name, or `not_found` naming them.
fn find_user(conn: &mut DbConn, name: &str) -> Result<users::User, Failure> {
    Ok(users::by_name(conn, name)?
        .ok_or_else(|| ApiError::not_found(format!("there is no user named {name}")))?)
}

pub async fn add(
    state: &ServerState,
    caller: &Caller,
    raw: &str,
    username: &str,
    list: Vec<NewEnvelope>,
) -> Result<Response, ApiError> {
    let target = access::username(username)?;
    let (raw, caller) = (raw.to_owned(), caller.clone());
    super::write(state, move |c| {
        let a = access::member(c, &raw, caller.user_id(), true)?;
        a.require_manager("add members")?;
        let user = find_user(c, &target)?;
        let now = db::now();
        change::add_member(c, &a.group, &user, GroupRole::Member, now)?;
        let current = a.group.key_generation.map(generation);
        let list = envelopes::check_add(current, &user.username, list)?;
        let (signer, key) = signer(c, &caller)?;
        let ids = HashMap::from([(user.username.clone(), user.id)]);
        envelopes::store(c, a.group.id, &list, &ids, (&signer, &key), now)?;
        caller.audit(
            c,
            "group.add",
            Some(&user.username),
            &format!(
                "{signer} added {} to group {} as a member, with {}",
                user.username,
                a.group.name,
                plural(list.len(), "envelope", "envelopes")
            ),
        )?;
        Ok(Response::Ok)
    })
    .await
}

/// `group_remove` (`target` named) and `group_leave` (`target` `None`: the caller).
pub async fn remove(
    state: &ServerState,
    caller: &Caller,
    raw: &str,
    target: Option<&str>,
    rotation: Option<Rotation>,
) -> Result<Response, ApiError> {
    let target = target.map(access::username).transpose()?;
    let (raw, caller) = (raw.to_owned(), caller.clone());
    super::write(state, move |c| {
        let a = access::member(c, &raw, caller.user_id(), true)?;
        let name = a.group.name.clone();
        let (user_id, username, event, what) = match &target {
            None => {
                if a.role == GroupRole::Owner {
                    return Err(ApiError::forbidden(format!(
                        "the owner cannot leave group {name}: transfer ownership with \
                         `vault group role {name} USER owner` or delete the group"
                    ))
                    .into());
                }
                let me = caller.username().to_owned();
                let what = format!("{me} left group {name}");
                (caller.user_id(), me, "group.leave", what)
            }
            Some(target) => {
                a.require_manager("remove members")?;
                let user = find_user(c, target)?;
                let member = groups::member(c, a.group.id, user.id)?.ok_or_else(|| {
                    ApiError::not_found(format!("{target} is not a member of group {name}"))
                })?;
                access::check_remove(&name, a.role, role_of(&member)?)?;
                let what = format!(
                    "{} removed {} from group {name}",
                    caller.username(),
                    user.username
                );
                (user.id, user.username, "group.remove", what)
            }
        };
        // The next generation is checked against who stays before anything changes.
        let next = match rotation {
            None => None,
            Some(r) => {
                let current = a.group.key_generation.ok_or_else(envelopes::changed)?;
                let staying: Vec<MemberUser> = groups::members(c, a.group.id)?
                    .into_iter()
                    .filter(|m| m.member.user_id != user_id)
                    .collect();
                let names: BTreeSet<String> = staying.iter().map(|m| m.username.clone()).collect();
                let expected = generation(current).saturating_add(1);
                let list = envelopes::check_rotation(r, expected, &names)?;
                Some((expected, list, staying))
            }
        };
        let pending = change::remove_member(c, &a.group, user_id)?;
        let outcome = match next {
            Some((generation, list, staying)) => {
                rotate(c, &caller, &a.group, generation, &list, &staying)?;
                format!(
                    "key generation {generation} made for the {} who stay",
                    staying.len()
                )
            }
            None if pending => "a new key generation is due".into(),
            None => "the group has no key yet".into(),
        };
        caller.audit(c, event, Some(&username), &format!("{what}; {outcome}"))?;
        Ok(Response::Ok)
    })
    .await
}

/// Stores a checked new `generation` (`list`, one envelope per member of `members`) as the
/// one in force.
pub(super) fn rotate(
    conn: &mut DbConn,
    caller: &Caller,
    group: &Group,
    generation: u32,
    list: &[Checked],
    members: &[MemberUser],
) -> Result<(), Failure> {
    let (signer, key) = signer(conn, caller)?;
    let ids: HashMap<String, i64> = members
        .iter()
        .map(|m| (m.username.clone(), m.member.user_id))
        .collect();
    envelopes::store(conn, group.id, list, &ids, (&signer, &key), db::now())?;
    groups::set_generation(conn, group.id, i64::from(generation))?;
    Ok(())
}

pub async fn set_role(
    state: &ServerState,
    caller: &Caller,
    raw: &str,
    username: &str,
    role: GroupRole,
) -> Result<Response, ApiError> {
    let target = access::username(username)?;
    let (raw, caller) = (raw.to_owned(), caller.clone());
    super::write(state, move |c| {
        let a = access::member(c, &raw, caller.user_id(), true)?;
        a.require_manager("change roles")?;
        let name = a.group.name.clone();
        let user = find_user(c, &target)?;
        let member = groups::member(c, a.group.id, user.id)?.ok_or_else(|| {
            ApiError::not_found(format!("{target} is not a member of group {name}"))
        })?;
        let now_role = role_of(&member)?;
        access::check_set_role(&name, a.role, now_role, role)?;
        if now_role == role {
            return Ok(Response::Ok);
        }
        let detail = if role == GroupRole::Owner {
            change::set_owner(c, &a.group, user.id)?;
            format!(
                "{} handed group {name} over to {}, and is now a manager",
                caller.username(),
                user.username
            )
        } else {
            groups::set_role(c, a.group.id, user.id, role.as_str())?;
            format!(
                "{} made {} a {role} of group {name} (was {now_role})",
                caller.username(),
                user.username
            )
        };
        caller.audit(c, "group.role", Some(&user.username), &detail)?;
        Ok(Response::Ok)
    })
    .await
}

pub async fn rename(
    state: &ServerState,
    caller: &Caller,
    raw: &str,
    new_name: &str,
) -> Result<Response, ApiError> {
    let new_name = access::group_name(new_name)?;
    let (raw, caller) = (raw.to_owned(), caller.clone());
    super::write(state, move |c| {
        let a = access::member(c, &raw, caller.user_id(), true)?;
        a.require_manager("rename it")?;
        if a.group.name == new_name {
            return Ok(Response::Ok);
        }
        change::rename(c, &a.group, &new_name)?;
        caller.audit(
            c,
            "group.rename",
            None,
            &format!(
                "renamed group {} (id {}) to {new_name}",
                a.group.name, a.group.id
            ),
        )?;
        Ok(Response::Ok)
    })
    .await
}

pub async fn delete(state: &ServerState, caller: &Caller, raw: &str) -> Result<Response, ApiError> {
    let (raw, caller) = (raw.to_owned(), caller.clone());
    let purged = super::write(state, move |c| {
        let a = access::member(c, &raw, caller.user_id(), true)?;
        a.require_owner("delete it")?;
        let purged = change::delete(c, &a.group, db::now())?;
        caller.audit(
            c,
            "group.delete",
            None,
            &format!(
                "deleted group {} (id {}) with {}, {} ({} bytes) and {}",
                a.group.name,
                a.group.id,
                plural(purged.entries, "entry", "entries"),
                plural(purged.versions, "version", "versions"),
                purged.bytes,
                plural(purged.uploads, "upload", "uploads")
            ),
        )?;
        Ok(purged)
    })
    .await?;
    // Partial uploads go now; gc removes anything left as an orphan later.
    if !purged.partials.is_empty() {
        let blobs = Arc::clone(&state.blobs);
        let problems = tokio::task::spawn_blocking(move || purged.remove_partials(blobs.as_ref()))
            .await
            .unwrap_or_default();
        for problem in problems {
            tracing::warn!(problem = %problem, "gc removes it later");
        }
    }
    Ok(Response::Ok)
}

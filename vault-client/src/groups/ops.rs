//! The `vault group` commands as the client performs them (docs/FORMAT.md §8): each checks its
//! arguments, makes whatever key material the request needs (envelopes only for keys
//! that pass the pin store, see [`super::seal`]) and sends one request, retrying a
//! request the server refused with `conflict` because the group's key or members changed
//! in between.

use vault_core::crypto::{Key32, public_key_fingerprint};
use vault_core::format::InviteSecret;
use vault_core::proto::groups::{MAX_INVITE_TTL_S, MAX_INVITE_USES};
use vault_core::proto::{
    ByteBuf, GroupDetails, GroupRole, GroupSummary, MemberInfo, Request, Response, SecretBytes,
    UserKey, names,
};
use zeroize::Zeroizing;

use super::identity::Trust;
use super::pins::Seen;
use super::{keyring, seal};
use crate::files::keys::no_group_key;
use crate::files::{Files, FilesError, unexpected};

/// How often a request refused with `conflict` (the key or the members changed meanwhile)
/// is made again from fresh data.
const ATTEMPTS: usize = 3;

/// A group name as typed (`team` or `@team`), checked and case-folded.
pub fn group_name(raw: &str) -> Result<String, FilesError> {
    names::normalize_group_name(raw).map_err(FilesError::Usage)
}

/// A username as typed, checked and case-folded.
pub fn username(raw: &str) -> Result<String, FilesError> {
    names::normalize_username(raw).map_err(FilesError::Usage)
}

fn is_conflict(e: &FilesError) -> bool {
    e.api_code() == Some("conflict")
}

fn trust(files: &Files) -> Result<Trust<'_>, FilesError> {
    Ok(Trust {
        me: files.me()?,
        pins: files.pins(),
    })
}

/// A user's public key as the server has it (the name it answers for is checked).
pub async fn user_key(files: &Files, user: &str) -> Result<UserKey, FilesError> {
    let request = Request::UserKey {
        username: user.to_owned(),
    };
    match files.call(&request).await? {
        Response::UserKey(key) if key.username == user => Ok(key),
        Response::UserKey(key) => Err(FilesError::Integrity(format!(
            "asked for the key of {user}, the server answered with the key of {}",
            key.username
        ))),
        other => Err(unexpected("user_key", &other)),
    }
}

/// A new group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub group_id: i64,
    pub name: String,
}

/// Creates group `name` with the caller as owner, then stores its first key (`GK_0`) with
/// the caller's envelope. If that second step fails the group exists without a key; the
/// caller's client makes it the next time it connects (a warning says so).
pub async fn create(files: &Files, name: &str) -> Result<Created, FilesError> {
    let name = group_name(name)?;
    let (group_id, name) = match files.call(&Request::GroupCreate { name }).await? {
        Response::GroupCreated { group_id, name } => (group_id, name),
        other => return Err(unexpected("group_create", &other)),
    };
    let first_key = async {
        let trust = trust(files)?;
        let me = UserKey {
            username: trust.me.username().to_owned(),
            public_key: ByteBuf::from(trust.me.public_key().to_vec()),
        };
        let rotation = seal::rotation(&trust, group_id, 0, &[me])?;
        let request = Request::GroupRotate {
            group: name.clone(),
            rotation,
        };
        files.call(&request).await.map(|_| ())
    };
    match first_key.await {
        Ok(()) => {}
        // Made by another client of this user meanwhile.
        Err(e) if is_conflict(&e) => {}
        Err(e) => files.warn(format!(
            "@{name} was created, but its first key could not be stored ({e}); your vault \
             client makes it the next time it connects"
        )),
    }
    Ok(Created { group_id, name })
}

/// The caller's groups.
pub async fn list(files: &Files) -> Result<Vec<GroupSummary>, FilesError> {
    match files.call(&Request::GroupList).await? {
        Response::Groups { groups } => Ok(groups),
        other => Err(unexpected("group_list", &other)),
    }
}

/// A group's details.
pub async fn info(files: &Files, name: &str) -> Result<GroupDetails, FilesError> {
    let group = group_name(name)?;
    match files.call(&Request::GroupInfo { group }).await? {
        Response::GroupInfo(details) => Ok(details),
        other => Err(unexpected("group_info", &other)),
    }
}

/// A group's members.
#[derive(Debug, Clone, PartialEq)]
pub struct Members {
    pub group_id: i64,
    /// The key generation in force; `None` before the first key.
    pub generation: Option<u32>,
    pub members: Vec<MemberInfo>,
}

impl Members {
    /// The members as keys to wrap for, leaving out `except`.
    fn keys_except(&self, except: &str) -> Vec<UserKey> {
        self.members
            .iter()
            .filter(|m| m.username != except)
            .map(|m| UserKey {
                username: m.username.clone(),
                public_key: m.public_key.clone(),
            })
            .collect()
    }
}

/// A group's members, with their roles and public keys.
pub async fn members(files: &Files, name: &str) -> Result<Members, FilesError> {
    let group = group_name(name)?;
    match files.call(&Request::GroupMembers { group }).await? {
        Response::GroupMembers {
            group_id,
            generation,
            members,
        } => Ok(Members {
            group_id,
            generation,
            members,
        }),
        other => Err(unexpected("group_members", &other)),
    }
}

/// `SHA256:<hex>` of a member's public key.
pub fn member_fingerprint(member: &MemberInfo) -> String {
    public_key_fingerprint(&member.public_key)
}

/// A join code the caller made.
#[derive(Debug)]
pub struct Invite {
    /// `<invite_id>.<secret>`: the secret half never reaches the server.
    pub code: Zeroizing<String>,
    /// Unix seconds.
    pub expires_at: i64,
    pub uses: u32,
    /// How many key generations the code carries.
    pub generations: usize,
}

/// Makes a join code for group `name`, good for `uses` joins within `expires_s` seconds:
/// every generation of the key the caller holds travels sealed under the code's key part.
pub async fn invite(
    files: &Files,
    name: &str,
    uses: u32,
    expires_s: u64,
) -> Result<Invite, FilesError> {
    let group = group_name(name)?;
    if !(1..=MAX_INVITE_USES).contains(&uses) {
        return Err(FilesError::Usage(format!(
            "a join code is good for 1 to {MAX_INVITE_USES} uses, not {uses}"
        )));
    }
    if !(1..=MAX_INVITE_TTL_S).contains(&expires_s) {
        return Err(FilesError::Usage(format!(
            "a join code expires after at most {} days",
            MAX_INVITE_TTL_S / 86_400
        )));
    }
    let ring = keyring::fetch(files, &group).await?;
    if ring.is_empty() {
        return Err(no_group_key(&group));
    }
    let keys: Vec<(u32, Key32)> = ring.keys().iter().map(|(g, k)| (*g, k.clone())).collect();
    let secret = InviteSecret::generate()?;
    let auth = secret.auth()?;
    let request = Request::GroupInviteCreate {
        group,
        auth: SecretBytes::new(auth.dangerously_leak_secret().to_vec()),
        sealed_keys: ByteBuf::from(secret.seal_keys(ring.group_id, &keys)?),
        uses,
        expires_s,
    };
    match files.call(&request).await? {
        Response::InviteCreated {
            invite_id,
            expires_at,
        } => Ok(Invite {
            code: secret.code(invite_id),
            expires_at,
            uses,
            generations: keys.len(),
        }),
        other => Err(unexpected("group_invite_create", &other)),
    }
}

/// A group joined with a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub group_id: i64,
    pub name: String,
    /// How many key generations the code carried.
    pub generations: usize,
}

/// Joins with a join code: proves the code's auth part, opens the keys it carries with
/// the key part, and stores the caller's own envelopes of them.
pub async fn join(files: &Files, code: &str) -> Result<Joined, FilesError> {
    let (invite_id, secret) = InviteSecret::parse_code(code)?;
    let auth = || -> Result<SecretBytes, FilesError> {
        Ok(SecretBytes::new(
            secret.auth()?.dangerously_leak_secret().to_vec(),
        ))
    };
    let request = Request::GroupInviteOpen {
        invite_id,
        auth: auth()?,
    };
    let invite = match files.call(&request).await? {
        Response::InviteOpened(info) => info,
        other => return Err(unexpected("group_invite_open", &other)),
    };
    let keys = secret.open_keys(invite.group_id, &invite.sealed_keys)?;
    let mut generations: Vec<u32> = keys.iter().map(|(g, _)| *g).collect();
    generations.sort_unstable();
    generations.dedup();
    if generations.len() != keys.len() {
        return Err(FilesError::Integrity(
            "the join code carries one key generation twice".into(),
        ));
    }
    let trust = trust(files)?;
    let me = UserKey {
        username: trust.me.username().to_owned(),
        public_key: ByteBuf::from(trust.me.public_key().to_vec()),
    };
    let held: Vec<(u32, &Key32)> = keys.iter().map(|(g, k)| (*g, k)).collect();
    let request = Request::GroupJoin {
        invite_id,
        auth: auth()?,
        envelopes: seal::envelopes_for(&trust, invite.group_id, &me, &held)?,
    };
    let (group_id, name) = match files.call(&request).await? {
        Response::GroupJoined { group_id, name } => (group_id, name),
        other => return Err(unexpected("group_join", &other)),
    };
    if group_id != invite.group_id {
        return Err(FilesError::Integrity(format!(
            "the join code is for group {}, but the server says you joined group {group_id}",
            invite.group_id
        )));
    }
    files.forget_group_keys(&name);
    Ok(Joined {
        group_id,
        name,
        generations: keys.len(),
    })
}

/// What `add` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    pub username: String,
    /// The fingerprint of the key the generations were wrapped for.
    pub fingerprint: String,
    /// How many key generations were wrapped for the new member.
    pub generations: usize,
    /// The key was new to this client and was recorded (trust on first use): worth
    /// comparing with its owner (`vault key verify`).
    pub first_sight: bool,
}

/// Adds `user` to group `name` with an envelope of every key generation, made for their
/// public key once it passes the pin store.
pub async fn add(files: &Files, name: &str, user: &str) -> Result<Added, FilesError> {
    let group = group_name(name)?;
    let user = username(user)?;
    let key = user_key(files, &user).await?;
    let trust = trust(files)?;
    // Checked before anything else, so that a swapped key is the error shown.
    let first_sight = trust.recipient(&key)? == Seen::FirstSight;
    let mut last_current = None;
    for attempt in 1..=ATTEMPTS {
        let ring = keyring::fetch(files, &group).await?;
        let all = ring.all_generations()?;
        let envelopes = seal::envelopes_for(&trust, ring.group_id, &key, &all)?;
        let request = Request::GroupAdd {
            group: group.clone(),
            username: user.clone(),
            envelopes,
        };
        match files.call(&request).await {
            Ok(_) => {
                return Ok(Added {
                    username: user,
                    fingerprint: public_key_fingerprint(&key.public_key),
                    generations: all.len(),
                    first_sight,
                });
            }
            // The key was rotated meanwhile: wrap the new generation too.
            Err(e)
                if is_conflict(&e)
                    && attempt < ATTEMPTS
                    && last_current.is_none_or(|c| c != ring.current) =>
            {
                last_current = Some(ring.current);
            }
            Err(e) => return Err(e),
        }
    }
    Err(FilesError::Usage(format!(
        "the key of @{group} kept changing while {user} was being added; run the command again"
    )))
}

/// What `remove` or `leave` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The new key generation made for the members who stay; `None` when the group has
    /// no key, or the next keyed member's client makes it (see the warnings).
    pub rotated_to: Option<u32>,
}

/// Who goes.
enum Departure {
    Remove(String),
    Leave,
}

/// Removes `user` from group `name`: access ends at once on the server, and a fresh key
/// generation goes to every member who stays.
pub async fn remove(files: &Files, name: &str, user: &str) -> Result<Removed, FilesError> {
    let group = group_name(name)?;
    depart(files, &group, Departure::Remove(username(user)?)).await
}

/// The caller leaves group `name`. Access ends at once; the next key generation is made by
/// the next member's client that connects (the leaver would know any key it made).
pub async fn leave(files: &Files, name: &str) -> Result<Removed, FilesError> {
    let group = group_name(name)?;
    depart(files, &group, Departure::Leave).await
}

async fn depart(files: &Files, group: &str, who: Departure) -> Result<Removed, FilesError> {
    let trust = trust(files)?;
    let leaver = match &who {
        Departure::Remove(user) => user.clone(),
        Departure::Leave => trust.me.username().to_owned(),
    };
    for attempt in 1..=ATTEMPTS {
        let members = members(files, group).await?;
        if !members.members.iter().any(|m| m.username == leaver) {
            return Err(FilesError::Usage(format!(
                "{leaver} is not a member of @{group}"
            )));
        }
        let staying = members.keys_except(&leaver);
        // Someone who leaves does not make the next key: they would know it. The server
        // marks the group, and the next member's client that connects makes it.
        let generation = match &who {
            Departure::Remove(_) => members.generation,
            Departure::Leave => None,
        };
        let rotation = match generation {
            None => None,
            Some(g) => match seal::rotation(&trust, members.group_id, g + 1, &staying) {
                Ok(r) => Some(r),
                Err(e) => {
                    files.warn(format!(
                        "{leaver} leaves @{group} without a new key for the others, because \
                         {e}; the next member whose client trusts every member's key makes it"
                    ));
                    None
                }
            },
        };
        let rotated_to = rotation.as_ref().map(|r| r.generation);
        let request = match &who {
            Departure::Remove(user) => Request::GroupRemove {
                group: group.to_owned(),
                username: user.clone(),
                rotation,
            },
            Departure::Leave => Request::GroupLeave {
                group: group.to_owned(),
                rotation,
            },
        };
        match files.call(&request).await {
            Ok(_) => {
                files.forget_group_keys(group);
                return Ok(Removed { rotated_to });
            }
            // A member joined or the key changed meanwhile: make the rotation again.
            Err(e) if is_conflict(&e) && rotated_to.is_some() && attempt < ATTEMPTS => {}
            Err(e) => return Err(e),
        }
    }
    Err(FilesError::Usage(format!(
        "the members of @{group} kept changing; run the command again"
    )))
}

/// Gives `user` the role `role` in group `name`.
pub async fn set_role(
    files: &Files,
    name: &str,
    user: &str,
    role: GroupRole,
) -> Result<(), FilesError> {
    let request = Request::GroupSetRole {
        group: group_name(name)?,
        username: username(user)?,
        role,
    };
    files.call(&request).await.map(|_| ())
}

/// Renames group `old` to `new`; returns the new (case-folded) name.
pub async fn rename(files: &Files, old: &str, new: &str) -> Result<String, FilesError> {
    let group = group_name(old)?;
    let new_name = group_name(new)?;
    let request = Request::GroupRename {
        group: group.clone(),
        new_name: new_name.clone(),
    };
    files.call(&request).await?;
    files.forget_group_keys(&group);
    Ok(new_name)
}

/// Deletes group `name` and every file in it (owner only).
pub async fn delete(files: &Files, name: &str) -> Result<(), FilesError> {
    let group = group_name(name)?;
    files
        .call(&Request::GroupDelete {
            group: group.clone(),
        })
        .await?;
    files.forget_group_keys(&group);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_case_folded() {
        assert_eq!(group_name("@Team").expect("name"), "team");
        assert!(group_name("a/b").is_err());
        assert_eq!(username("Bob").expect("name"), "bob");
        assert!(username("x").is_err());
    }

    #[test]
    fn the_leaver_is_left_out_of_the_rotation() {
        let member = |name: &str| MemberInfo {
            username: name.into(),
            role: GroupRole::Member,
            has_key: true,
            joined_at: 0,
            public_key: ByteBuf::from(name.as_bytes().to_vec()),
        };
        let m = Members {
            group_id: 1,
            generation: Some(0),
            members: vec![member("alice"), member("bob"), member("carol")],
        };
        let staying: Vec<String> = m
            .keys_except("bob")
            .into_iter()
            .map(|k| k.username)
            .collect();
        assert_eq!(staying, ["alice", "carol"]);
        assert_eq!(
            member_fingerprint(&m.members[0]),
            public_key_fingerprint(b"alice")
        );
    }
}

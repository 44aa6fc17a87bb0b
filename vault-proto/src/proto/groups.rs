//! Message types of the group and key requests (docs/PROTOCOL.md §6.3, docs/FORMAT.md §8): roles,
//! group and member listings, group-key envelopes, invites, and the key work a member's client does
//! for the others ([`KeyTask`]: the first key of a group, a rotation after a removal, envelopes for
//! members who have none).
//!
//! Groups are named by their (case-folded) name in requests and by their id in everything
//! that is sealed. Envelopes are made and opened by clients only
//! (`vault_core::format::groupkey`); the server stores them with the name and public key of
//! the member who sent them, and hands each member only their own.

use serde::{Deserialize, Serialize};

use super::ByteBuf;

/// At most this many members in one group, so that a rotation (one envelope per member)
/// fits in one frame.
pub const MAX_GROUP_MEMBERS: usize = 500;
/// At most this many envelopes in one request.
pub const MAX_ENVELOPES: usize = 1000;
/// At most this many uses of one join code.
pub const MAX_INVITE_USES: u32 = 1000;
/// The longest a join code may stay valid: 30 days.
pub const MAX_INVITE_TTL_S: u64 = 30 * 24 * 3600;

/// A member's role. Owners do everything; managers add, remove and re-role members and
/// rename the group; members read and write files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupRole {
    Owner,
    Manager,
    Member,
}

impl GroupRole {
    /// The role as written on the command line and stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupRole::Owner => "owner",
            GroupRole::Manager => "manager",
            GroupRole::Member => "member",
        }
    }

    /// Whether this role may add, remove and re-role members, invite and rename.
    pub fn manages(self) -> bool {
        matches!(self, GroupRole::Owner | GroupRole::Manager)
    }
}

impl std::fmt::Display for GroupRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for GroupRole {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "owner" => Ok(GroupRole::Owner),
            "manager" => Ok(GroupRole::Manager),
            "member" => Ok(GroupRole::Member),
            other => Err(format!(
                "unknown role {other:?}: use owner, manager or member"
            )),
        }
    }
}

/// One of the caller's groups.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupSummary {
    pub id: i64,
    pub name: String,
    /// The caller's role.
    pub role: GroupRole,
    pub members: u64,
    /// The key generation in force; `None` until the first key is made.
    pub generation: Option<u32>,
    /// The caller holds an envelope of the generation in force.
    pub has_key: bool,
}

/// `vault group info`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupDetails {
    pub summary: GroupSummary,
    pub created_at: i64,
    /// Members who do not hold the key in force yet.
    pub waiting: u64,
    /// A member was removed and the next key generation is not made yet.
    pub rotation_pending: bool,
    pub used_bytes: u64,
    pub quota_bytes: u64,
}

/// One member of a group, with the public key that envelopes for them are made with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub username: String,
    pub role: GroupRole,
    /// The member holds an envelope of the generation in force.
    pub has_key: bool,
    pub joined_at: i64,
    /// RSA-3072 SubjectPublicKeyInfo DER.
    pub public_key: ByteBuf,
}

/// A user and their public key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserKey {
    pub username: String,
    /// RSA-3072 SubjectPublicKeyInfo DER.
    pub public_key: ByteBuf,
}

/// An envelope a client sends: `GK_generation` for `member`, signed by the sender
/// (see `vault_core::format::groupkey`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEnvelope {
    pub member: String,
    pub generation: u32,
    pub envelope: ByteBuf,
    pub signature: ByteBuf,
}

/// One of the caller's own envelopes, with who signed it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnvelopeInfo {
    pub generation: u32,
    pub envelope: ByteBuf,
    pub signature: ByteBuf,
    /// The member who wrapped it.
    pub signer: String,
    /// The signer's public key when they sent it.
    pub signer_key: ByteBuf,
}

/// A new key generation with an envelope for every member.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rotation {
    /// `0` for a group's first key, else the generation in force + 1.
    pub generation: u32,
    pub envelopes: Vec<NewEnvelope>,
}

/// Key work the caller's client can do for a group it holds the keys of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyTask {
    /// The group has no key yet (made by `vault-admin`, or its creator's client stopped
    /// early): make `GK_0` for these members (`group_rotate` with generation 0).
    FirstKey {
        group_id: i64,
        group: String,
        members: Vec<UserKey>,
    },
    /// A member was removed without a new key (by `vault-admin`): make
    /// `GK_next_generation` for these members (`group_rotate`).
    Rotate {
        group_id: i64,
        group: String,
        next_generation: u32,
        members: Vec<UserKey>,
    },
    /// `member` lacks these generations, which the caller holds (`group_put_envelopes`).
    Wrap {
        group_id: i64,
        group: String,
        member: UserKey,
        generations: Vec<u32>,
    },
}

/// What `group_invite_open` shows to the holder of a join code.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InviteInfo {
    pub group_id: i64,
    pub group: String,
    /// The group keys sealed under the code's key part.
    pub sealed_keys: ByteBuf,
}

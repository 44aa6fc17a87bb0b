//! What the file requests ask of a group: the namespace of `@NAME` for a member
//! ([`member_namespace`]), the key generation an upload's file key is wrapped under
//! ([`upload_generation`]), and whether an upload may still become a version
//! ([`commit_rule`], [`check_commit`]: the uploader is still a member and no newer
//! generation came meanwhile, so a removed member's key never protects a new version).

use vault_proto::proto::ApiError;

use super::access;
use super::tasks::generation;
use crate::db::DbConn;
use crate::db::files::namespaces::Namespace;
use crate::db::files::uploads::Upload;
use crate::db::groups::{self, Group};
use crate::error::Failure;

/// The namespace of group `raw` if `user_id` is a member (`not_found` for no such group,
/// `forbidden` for a non-member).
pub fn member_namespace(conn: &mut DbConn, raw: &str, user_id: i64) -> Result<Namespace, Failure> {
    let access = access::member(conn, raw, user_id, false)?;
    Ok(groups::namespace(conn, access.group.id)?
        .ok_or_else(|| crate::error::internal("a group without a namespace", &access.group.name))?)
}

/// The group a namespace belongs to (`None` for a personal one).
fn group_of(conn: &mut DbConn, ns: &Namespace) -> Result<Option<Group>, Failure> {
    let Some(id) = ns.group_id else {
        return Ok(None);
    };
    // The namespace is locked and the group's deletion locks it too: the group is there.
    Ok(Some(groups::by_id(conn, id)?.ok_or_else(|| {
        ApiError::not_found("this group was deleted, with its files")
    })?))
}

/// The generation an upload into `ns` wraps its file key under: 0 in a personal space,
/// the generation in force in a group's (refused while the group has no key).
pub fn upload_generation(conn: &mut DbConn, ns: &Namespace) -> Result<i64, Failure> {
    let Some(group) = group_of(conn, ns)? else {
        return Ok(0);
    };
    group.key_generation.ok_or_else(|| {
        ApiError::conflict(format!(
            "group {} has no key yet: a member's client makes it the next time it connects; \
             upload again then",
            group.name
        ))
        .into()
    })
}

/// What an upload into a namespace must meet to commit (see [`commit_rule`]).
#[derive(Debug)]
pub struct CommitRule {
    /// The group's name and generation in force (`None` in a personal space).
    group: Option<(String, u32)>,
}

impl CommitRule {
    /// Refuses an upload whose generation is older than the one in force (`conflict`).
    pub fn check(&self, upload: &Upload) -> Result<(), ApiError> {
        match &self.group {
            Some((_, current)) if generation(upload.generation) < *current => {
                Err(ApiError::conflict(
                    "the group key was rotated while uploading; run the command again",
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Inside the namespace's write transaction: refuses to commit uploads of `uploader` into
/// a group's space once they are no longer a member (`forbidden`), and returns the rule
/// for each upload's generation ([`CommitRule::check`]).
pub fn commit_rule(
    conn: &mut DbConn,
    ns: &Namespace,
    uploader: i64,
) -> Result<CommitRule, Failure> {
    let Some(group) = group_of(conn, ns)? else {
        return Ok(CommitRule { group: None });
    };
    if groups::member(conn, group.id, uploader)?.is_none() {
        return Err(access::not_a_member(&group.name).into());
    }
    let current = group.key_generation.map_or(0, generation);
    Ok(CommitRule {
        group: Some((group.name, current)),
    })
}

/// Both checks of [`commit_rule`] for one upload.
pub fn check_commit(conn: &mut DbConn, ns: &Namespace, upload: &Upload) -> Result<(), Failure> {
    commit_rule(conn, ns, upload.user_id)?.check(upload)?;
    Ok(())
}

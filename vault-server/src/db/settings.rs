//! Server-wide values kept in the database so every server instance shares them
//! (for example the secret behind `prelogin`'s fake salts).

use diesel::prelude::*;

use super::schema::settings;
use super::{DbConn, DbResult};

/// Returns the value under `name`, creating it with `make()` on first use. Safe when
/// several instances race: the first insert wins and everyone reads the winner.
pub fn get_or_create(
    conn: &mut DbConn,
    name: &str,
    make: impl FnOnce() -> Vec<u8>,
) -> DbResult<Vec<u8>> {
    let existing: Option<Vec<u8>> = settings::table
        .find(name)
        .select(settings::value)
        .first(conn)
        .optional()?;
    if let Some(value) = existing {
        return Ok(value);
    }
    let _ = diesel::insert_into(settings::table)
        .values((settings::name.eq(name), settings::value.eq(make())))
        .execute(conn);
    Ok(settings::table
        .find(name)
        .select(settings::value)
        .first(conn)?)
}

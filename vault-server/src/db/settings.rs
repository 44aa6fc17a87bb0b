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

/// The value under `name`, if any.
pub fn get(conn: &mut DbConn, name: &str) -> DbResult<Option<Vec<u8>>> {
    Ok(settings::table
        .find(name)
        .select(settings::value)
        .get_result(conn)
        .optional()?)
}

/// Sets the value under `name` (last writer wins).
pub fn put(conn: &mut DbConn, name: &str, value: &[u8]) -> DbResult<()> {
    let updated = diesel::update(settings::table.find(name))
        .set(settings::value.eq(value))
        .execute(conn)?;
    if updated == 0 {
        let inserted = diesel::insert_into(settings::table)
            .values((settings::name.eq(name), settings::value.eq(value)))
            .execute(conn);
        if inserted.is_err() {
            // Another instance inserted it first: overwrite theirs.
            diesel::update(settings::table.find(name))
                .set(settings::value.eq(value))
                .execute(conn)?;
        }
    }
    Ok(())
}

//! Rebuilds the server when a migration is added or changed: `embed_migrations!` reads the
//! `migrations/` folders at compile time, and cargo does not otherwise watch them.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}

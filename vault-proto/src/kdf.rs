//! Argon2id cost parameters as the server stores and hands them out in `prelogin`, and the
//! bounds a client holds them to before spending memory on them (docs/FORMAT.md §1).

use serde::{Deserialize, Serialize};

/// Length in bytes of the per-user Argon2id salt.
pub const SALT_LEN: usize = 16;

/// Parameters outside the accepted bounds, with why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidKdfParams(pub String);

/// Largest accepted Argon2 memory cost: 4 GiB, in KiB.
const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
/// Largest accepted Argon2 iteration count.
const MAX_ITERATIONS: u32 = 100;
/// Largest accepted Argon2 parallelism.
const MAX_PARALLELISM: u32 = 16;

/// Argon2id cost parameters. The server hands them out in `prelogin`, so the client checks
/// them with [`KdfParams::validate`] before spending memory on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory cost in KiB (Argon2 `m`).
    pub memory_kib: u32,
    /// Number of passes (Argon2 `t`).
    pub iterations: u32,
    /// Degree of parallelism (Argon2 `p`).
    pub parallelism: u32,
}

impl KdfParams {
    /// The defaults for new accounts: 64 MiB, 3 passes, 1 lane.
    pub const DEFAULT: KdfParams = KdfParams {
        memory_kib: 65536,
        iterations: 3,
        parallelism: 1,
    };

    /// Refuses parameters Argon2 can't use and ones too costly to accept from a server.
    pub fn validate(&self) -> Result<(), InvalidKdfParams> {
        let refuse = |msg: String| Err(InvalidKdfParams(msg));
        if self.parallelism == 0 {
            return refuse("parallelism must be at least 1".into());
        }
        if self.parallelism > MAX_PARALLELISM {
            return refuse(format!(
                "parallelism {} is above the maximum of {MAX_PARALLELISM}",
                self.parallelism
            ));
        }
        if self.iterations == 0 {
            return refuse("iterations must be at least 1".into());
        }
        if self.iterations > MAX_ITERATIONS {
            return refuse(format!(
                "iterations {} is above the maximum of {MAX_ITERATIONS}",
                self.iterations
            ));
        }
        let min_memory = 8 * self.parallelism;
        if self.memory_kib < min_memory {
            return refuse(format!(
                "memory {} KiB is below the minimum of {min_memory} KiB (8 KiB per lane)",
                self.memory_kib
            ));
        }
        if self.memory_kib > MAX_MEMORY_KIB {
            return refuse(format!(
                "memory {} KiB is above the maximum of {MAX_MEMORY_KIB} KiB (4 GiB)",
                self.memory_kib
            ));
        }
        Ok(())
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

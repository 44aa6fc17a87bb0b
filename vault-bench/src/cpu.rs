//! CPU time as Linux counts it: of another process from `/proc/PID/stat` (user + system,
//! every thread, the exited ones too; in ticks of 10 ms), of this process and of the
//! calling thread from their CPU-time clocks (exact to the nanosecond).

use std::time::Duration;

use anyhow::Context;
use rustix::time::ClockId;

/// The unit of the times in `/proc/PID/stat`: `USER_HZ`, 100 on every Linux ABI.
const TICKS_PER_SECOND: u64 = 100;

/// User + system CPU time of process `pid` so far.
pub fn of_process(pid: u32) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    process_time(&text).with_context(|| format!("unexpected contents of {path}: {text:?}"))
}

/// CPU time of this process (every thread) so far.
pub fn of_this_process() -> Duration {
    clock(ClockId::ProcessCPUTime)
}

/// CPU time of the calling thread so far.
pub fn of_this_thread() -> Duration {
    clock(ClockId::ThreadCPUTime)
}

fn clock(id: ClockId) -> Duration {
    let now = rustix::time::clock_gettime(id);
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

/// The cores this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line. The command name (field
/// 2) is in parentheses and may hold spaces and parentheses, so the fields are counted
/// from the last `)`.
fn process_time(stat: &str) -> Option<Duration> {
    let (_, after_name) = stat.rsplit_once(')')?;
    // After the name: field 3 (state) is at index 0, so field N is at index N - 3.
    let mut fields = after_name.split_whitespace().skip(14 - 3);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    let ticks = user + system;
    Some(Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_time_counts_fields_after_the_name() {
        // A name with a space and a parenthesis; utime 250, stime 31.
        let stat =
            "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194304 5000 0 0 0 250 31 0 0 20 0 3 0 77 0 0";
        assert_eq!(process_time(stat), Some(Duration::from_millis(2810)));
        assert_eq!(process_time("4242 (short"), None);
    }

    #[test]
    fn this_process_and_thread_have_spent_some_time() {
        let (thread, process) = (of_this_thread(), of_this_process());
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(i));
        }
        std::hint::black_box(x);
        assert!(of_this_thread() > thread);
        assert!(of_this_process() > process);
        assert!(of_process(std::process::id()).is_ok());
    }
}

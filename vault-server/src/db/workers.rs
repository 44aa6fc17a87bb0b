//! The threads that run database work: as many as the pool has connections, taking jobs
//! from one queue in turn. Keeping database work on these few threads keeps what SQLite
//! and diesel allocate and free all the time (page-cache pages, rows) in their few malloc
//! arenas. On tokio's blocking pool it went through every blocking thread's arena, and
//! each arena kept some: the small-files benchmark's server peaked at 60–72 MiB, and at 45
//! MiB with `MALLOC_ARENA_MAX=2`.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// A handle on the database threads, cheap to clone; they stop when the last handle is
/// dropped and the jobs queued before that have run.
#[derive(Clone, Debug)]
pub struct Workers {
    queue: Sender<Job>,
}

impl Workers {
    /// Starts `count` threads named `NAME-N`.
    pub fn start(count: usize, name: &str) -> std::io::Result<Workers> {
        let (queue, jobs) = std::sync::mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        for n in 0..count {
            let jobs = Arc::clone(&jobs);
            std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || work_through(&jobs))?;
        }
        Ok(Workers { queue })
    }

    /// Runs `work` on one of the threads and waits for its result; `None` if it panicked
    /// (the thread goes on with the next job).
    pub async fn run<T, F>(&self, work: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(work());
        });
        self.queue.send(job).ok()?;
        result.await.ok()
    }
}

/// One thread's loop: the next job, until the queue is closed.
fn work_through(jobs: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for a job, never while running one.
        let next = match jobs.lock() {
            Ok(jobs) => jobs.recv(),
            Err(_) => return,
        };
        let Ok(job) = next else { return };
        // A panicking job drops its result sender, which its caller sees as `None`.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_the_named_threads_and_a_panic_spares_the_thread() {
        let workers = Workers::start(1, "db-test").expect("start");
        let name = workers
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .expect("result");
        assert_eq!(name.as_deref(), Some("db-test-0"));
        let panicked: Option<()> = workers.run(|| panic!("a failing job")).await;
        assert!(panicked.is_none());
        assert_eq!(workers.run(|| 6 * 7).await, Some(42), "the thread went on");
    }
}

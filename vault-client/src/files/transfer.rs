//! Runs the files of a plan, several at once on concurrent streams of one connection
//! (up to [`MAX_IN_FLIGHT`]). A broken connection is retried a few times — reconnect with
//! the saved session, then resume — before the command gives up with an error that says
//! rerunning it resumes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::download::{Downloaded, download_file};
use super::plan::{GetItem, GetPlan, PutItem, PutPlan};
use super::progress::{Progress, RateLimit};
use super::upload::{Uploaded, upload_file};
use super::{Files, FilesError};

/// Files in flight at once.
pub const MAX_IN_FLIGHT: usize = 4;
/// Reconnects per file before giving up.
pub const RETRIES: u32 = 3;

/// How a batch runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub progress: Arc<dyn Progress>,
    pub limit: Option<Arc<RateLimit>>,
    /// Files in flight at once (1 to [`MAX_IN_FLIGHT`]).
    pub in_flight: usize,
}

/// How many times one request or transfer waits out "slow down" before giving up.
pub const THROTTLE_WAITS: u32 = 30;

/// Waits out a "slow down" answer: the server's `retry_after_s`, at least a tenth of a
/// second and at most five seconds.
pub async fn pause(retry_after_s: u64) {
    let wait = Duration::from_secs(retry_after_s.min(5)).max(Duration::from_millis(100));
    tokio::time::sleep(wait).await;
}

/// Runs `job` with reconnects on a broken connection (up to [`RETRIES`]), and waits out
/// the server's "slow down" answers (up to [`THROTTLE_WAITS`]); a retried job resumes.
pub async fn with_retry<T, F, Fut>(
    files: &Files,
    what: &str,
    progress: &dyn Progress,
    job: F,
) -> Result<T, FilesError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, FilesError>>,
{
    let mut attempt = 0;
    let mut waits = 0;
    loop {
        let conn = files.conn();
        let e = match job().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_connection() => e,
            Err(e) => match e.retry_after() {
                Some(seconds) if waits < THROTTLE_WAITS => {
                    waits += 1;
                    pause(seconds).await;
                    continue;
                }
                _ => return Err(e),
            },
        };
        if attempt == RETRIES {
            return Err(FilesError::Usage(format!(
                "{what}: {e}; gave up after {RETRIES} reconnects. Run the same command again to resume"
            )));
        }
        attempt += 1;
        progress.note(&format!(
            "{what}: {e}; reconnecting to resume (attempt {attempt} of {RETRIES})"
        ));
        tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
        if let Err(re) = files.reconnect(&conn).await
            && !re.is_connection()
        {
            return Err(re);
        }
    }
}

/// Runs `run` over `items` with `in_flight` workers; stops taking new items after the
/// first error, which is returned.
async fn run_all<I, T, F, Fut>(
    items: Vec<I>,
    in_flight: usize,
    run: F,
) -> Result<Vec<T>, FilesError>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(I) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T, FilesError>> + Send + 'static,
{
    let count = items.len();
    let queue = Arc::new(Mutex::new(
        items.into_iter().enumerate().collect::<VecDeque<_>>(),
    ));
    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let run = Arc::new(run);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..in_flight.clamp(1, MAX_IN_FLIGHT) {
        let (queue, failed, run) = (Arc::clone(&queue), Arc::clone(&failed), Arc::clone(&run));
        workers.spawn(async move {
            let mut done = Vec::new();
            loop {
                if failed.load(std::sync::atomic::Ordering::SeqCst) {
                    return Ok(done);
                }
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                let Some((index, item)) = next else {
                    return Ok(done);
                };
                match run(item).await {
                    Ok(v) => done.push((index, v)),
                    Err(e) => {
                        failed.store(true, std::sync::atomic::Ordering::SeqCst);
                        return Err(e);
                    }
                }
            }
        });
    }
    let mut results: Vec<(usize, T)> = Vec::with_capacity(count);
    let mut first_error = None;
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(Ok(done)) => results.extend(done),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error
                    .get_or_insert(FilesError::Usage(format!("a transfer task failed: {e}")));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    results.sort_by_key(|(i, _)| *i);
    Ok(results.into_iter().map(|(_, v)| v).collect())
}

/// Creates the plan's directories, then uploads its files.
pub async fn put_all(
    files: Arc<Files>,
    plan: PutPlan,
    opts: Options,
) -> Result<Vec<Uploaded>, FilesError> {
    for dir in &plan.dirs {
        with_retry(&files, &dir.to_string(), &*opts.progress, || {
            files.mkdir(dir)
        })
        .await?;
    }
    opts.progress.begin(plan.files.len() as u64, plan.bytes());
    let in_flight = opts.in_flight;
    run_all(plan.files, in_flight, move |item: PutItem| {
        let (files, opts) = (Arc::clone(&files), opts.clone());
        async move {
            let what = item.local.display().to_string();
            let done = with_retry(&files, &what, &*opts.progress, || {
                upload_file(
                    &files,
                    &item.local,
                    &item.remote,
                    &*opts.progress,
                    opts.limit.as_deref(),
                )
            })
            .await?;
            opts.progress.file_done();
            Ok(done)
        }
    })
    .await
}

/// Creates the plan's local directories, then downloads its files.
pub async fn get_all(
    files: Arc<Files>,
    plan: GetPlan,
    opts: Options,
) -> Result<Vec<Downloaded>, FilesError> {
    for dir in &plan.dirs {
        std::fs::create_dir_all(dir).map_err(|e| FilesError::io("create", dir, e))?;
    }
    opts.progress.begin(plan.files.len() as u64, plan.bytes());
    let in_flight = opts.in_flight;
    run_all(plan.files, in_flight, move |item: GetItem| {
        let (files, opts) = (Arc::clone(&files), opts.clone());
        async move {
            let what = item.remote.to_string();
            let done = with_retry(&files, &what, &*opts.progress, || {
                download_file(
                    &files,
                    &item.remote,
                    &item.local,
                    &*opts.progress,
                    opts.limit.as_deref(),
                )
            })
            .await?;
            opts.progress.file_done();
            Ok(done)
        }
    })
    .await
}

//! Runs the files of a plan, several at once on concurrent streams of one connection
//! (up to [`MAX_IN_FLIGHT`]; a batch of small files counts as one). A broken connection
//! is retried a few times — reconnect with the saved session, then resume — before the
//! command gives up with an error that says rerunning it resumes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::download::{Downloaded, get_file};
use super::plan::{GetItem, GetPlan, PutItem, PutPlan};
use super::progress::{Progress, RateLimit};
use super::rerun::{MadeDir, TargetNotes};
use super::small::{SmallFile, abort_leftovers, batches, is_small, upload_batch_with_retry};
use super::upload::{Uploaded, put_file};
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

/// One unit of work of `put_all`: a batch of small files, or one file alone. Each file
/// keeps its index in the plan.
enum PutJob {
    Batch(Vec<(usize, SmallFile)>),
    One(usize, PutItem),
}

/// Creates the plan's directories (noting the target the command makes, for its
/// re-runs), then uploads its files: small ones in batches ([`super::small`]), the others
/// one by one, all in plan order in the result. A file the remote side already holds is
/// not sent again ([`Uploaded::unchanged`]).
pub async fn put_all(
    files: Arc<Files>,
    plan: PutPlan,
    opts: Options,
) -> Result<Vec<Uploaded>, FilesError> {
    for dir in &plan.dirs {
        let id = with_retry(&files, &dir.to_string(), &*opts.progress, || {
            files.mkdir(dir)
        })
        .await?;
        if let Some((command, target)) = &plan.made_target
            && target == dir
        {
            TargetNotes::new(files.state()).note(command, MadeDir::Remote { id })?;
        }
    }
    opts.progress.begin(plan.files.len() as u64, plan.bytes());
    // What batches of a killed earlier command left open holds quota until it expires.
    with_retry(&files, "cleaning up", &*opts.progress, || {
        abort_leftovers(&files)
    })
    .await?;
    let mut small = Vec::new();
    let mut jobs = Vec::new();
    for (index, item) in plan.files.into_iter().enumerate() {
        if is_small(item.size) {
            let file = SmallFile {
                local: item.local,
                remote: item.remote,
                size: item.size,
                current: item.current,
            };
            small.push((index, file));
        } else {
            jobs.push(PutJob::One(index, item));
        }
    }
    // Batches first: many small files are where the round trips go.
    let batched = batches(small, |(_, f)| f).into_iter().map(PutJob::Batch);
    let jobs: Vec<PutJob> = batched.chain(jobs).collect();
    let in_flight = opts.in_flight;
    let done = run_all(jobs, in_flight, move |job: PutJob| {
        let (files, opts) = (Arc::clone(&files), opts.clone());
        async move {
            match job {
                PutJob::One(index, item) => {
                    let what = item.local.display().to_string();
                    let done = with_retry(&files, &what, &*opts.progress, || {
                        put_file(
                            &files,
                            &item.local,
                            &item.remote,
                            item.current.as_ref(),
                            &*opts.progress,
                            opts.limit.as_deref(),
                        )
                    })
                    .await?;
                    opts.progress.file_done();
                    Ok(vec![(index, done)])
                }
                PutJob::Batch(batch) => {
                    let (indexes, batch): (Vec<usize>, Vec<SmallFile>) = batch.into_iter().unzip();
                    let results = upload_batch_with_retry(
                        &files,
                        &batch,
                        &*opts.progress,
                        opts.limit.as_deref(),
                    )
                    .await?;
                    let mut done = Vec::with_capacity(results.len());
                    for (index, result) in indexes.into_iter().zip(results) {
                        done.push((index, result?));
                        opts.progress.file_done();
                    }
                    Ok(done)
                }
            }
        }
    })
    .await?;
    let mut done: Vec<(usize, Uploaded)> = done.into_iter().flatten().collect();
    done.sort_by_key(|(index, _)| *index);
    Ok(done.into_iter().map(|(_, u)| u).collect())
}

/// Creates the plan's local directories (noting the target the command makes, for its
/// re-runs), then downloads its files; a file the target already holds is not fetched
/// again ([`Downloaded::unchanged`]).
pub async fn get_all(
    files: Arc<Files>,
    plan: GetPlan,
    opts: Options,
) -> Result<Vec<Downloaded>, FilesError> {
    for dir in &plan.dirs {
        std::fs::create_dir_all(dir).map_err(|e| FilesError::io("create", dir, e))?;
        if let Some((command, target)) = &plan.made_target
            && target == dir
            && let Some(made) = MadeDir::local(dir)
        {
            TargetNotes::new(files.state()).note(command, made)?;
        }
    }
    opts.progress.begin(plan.files.len() as u64, plan.bytes());
    let in_flight = opts.in_flight;
    run_all(plan.files, in_flight, move |item: GetItem| {
        let (files, opts) = (Arc::clone(&files), opts.clone());
        async move {
            let what = item.remote.to_string();
            let done = with_retry(&files, &what, &*opts.progress, || {
                get_file(
                    &files,
                    &item.remote,
                    &item.local,
                    item.current.as_ref(),
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

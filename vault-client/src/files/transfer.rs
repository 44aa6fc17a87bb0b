//! Runs the files of a plan, several at once on concurrent streams of one connection
//! (up to [`MAX_IN_FLIGHT`]; a batch of small files counts as one). A broken connection
//! is retried a few times — reconnect with the saved session, then resume — before the
//! command gives up with an error that says rerunning it resumes.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::download::{Downloaded, get_file};
use super::leftovers::abort_leftovers;
use super::plan::{GetItem, GetPlan, PutItem, PutPlan};
use super::progress::{Attempt, Progress, RateLimit};
use super::rerun::{MadeDir, TargetNotes};
use super::small::{SmallFile, batches, is_small, upload_batch_with_retry};
use super::upload::{Storing, Uploaded, put_file};
use super::{Files, FilesError, RemotePath};

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
    /// How `put_all` stores each file.
    pub storing: Storing,
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
/// `job` reports through `progress`, which takes back what a failed attempt advanced
/// before the next one.
pub async fn with_retry<T, F, Fut>(
    files: &Files,
    what: &str,
    progress: &Attempt<'_>,
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
                    progress.take_back();
                    pause(seconds).await;
                    continue;
                }
                _ => return Err(e),
            },
        };
        if attempt == RETRIES {
            return Err(FilesError::GaveUp(format!(
                "{what}: {e}; gave up after {RETRIES} reconnects. Run the same command again to resume"
            )));
        }
        attempt += 1;
        progress.take_back();
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

/// What became of one item of [`run_each`].
#[derive(Debug)]
pub enum Outcome<T> {
    Done(T),
    Failed(FilesError),
    /// Not tried: an error that [`FilesError::stops_the_rest`] came first.
    Skipped,
}

/// Runs `run` over `items` with `in_flight` workers; an item's error is its own, unless
/// `stops(&error)`, after which no new item is started. One outcome per item, in order.
async fn run_each<I, T, F, Fut>(
    items: Vec<I>,
    in_flight: usize,
    stops: fn(&FilesError) -> bool,
    run: F,
) -> Vec<Outcome<T>>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(I) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T, FilesError>> + Send + 'static,
{
    use std::sync::atomic::{AtomicBool, Ordering};
    let count = items.len();
    let queue = Arc::new(Mutex::new(
        items.into_iter().enumerate().collect::<VecDeque<_>>(),
    ));
    let stopped = Arc::new(AtomicBool::new(false));
    let run = Arc::new(run);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..in_flight.clamp(1, MAX_IN_FLIGHT) {
        let (queue, stopped, run) = (Arc::clone(&queue), Arc::clone(&stopped), Arc::clone(&run));
        workers.spawn(async move {
            let mut done = Vec::new();
            while !stopped.load(Ordering::SeqCst) {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                let Some((index, item)) = next else {
                    break;
                };
                match run(item).await {
                    Ok(v) => done.push((index, Outcome::Done(v))),
                    Err(e) => {
                        if stops(&e) {
                            stopped.store(true, Ordering::SeqCst);
                        }
                        done.push((index, Outcome::Failed(e)));
                    }
                }
            }
            done
        });
    }
    let mut outcomes: Vec<Outcome<T>> = std::iter::repeat_with(|| Outcome::Skipped)
        .take(count)
        .collect();
    let mut crashed = None;
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(done) => {
                for (index, outcome) in done {
                    outcomes[index] = outcome;
                }
            }
            Err(e) => crashed = Some(format!("a transfer task failed: {e}")),
        }
    }
    if let Some(message) = crashed {
        // A worker that panicked took its results with it: what is not accounted for
        // cannot be said to be done or untried.
        for lost in outcomes
            .iter_mut()
            .filter(|o| matches!(o, Outcome::Skipped))
        {
            *lost = Outcome::Failed(FilesError::Usage(message.clone()));
        }
    }
    outcomes
}

/// [`run_each`] where any error stops the rest and is the result.
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
    let outcomes = run_each(items, in_flight, |_| true, run).await;
    let mut done = Vec::with_capacity(outcomes.len());
    let mut skipped = false;
    for outcome in outcomes {
        match outcome {
            Outcome::Done(v) => done.push(v),
            Outcome::Failed(e) => return Err(e),
            Outcome::Skipped => skipped = true,
        }
    }
    if skipped {
        return Err(FilesError::Usage(
            "a transfer stopped without saying why; run the command again".into(),
        ));
    }
    Ok(done)
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
        let progress = Attempt::new(&*opts.progress);
        let id = with_retry(&files, &dir.to_string(), &progress, || files.mkdir(dir)).await?;
        if let Some((command, target)) = &plan.made_target
            && target == dir
        {
            TargetNotes::new(files.state()).note(command, MadeDir::Remote { id })?;
        }
    }
    opts.progress.begin(plan.files.len() as u64, plan.bytes());
    // What batches of a killed earlier command left open holds quota until it expires.
    with_retry(
        &files,
        "cleaning up",
        &Attempt::new(&*opts.progress),
        || abort_leftovers(&files),
    )
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
                if_current: None,
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
                    let progress = Attempt::new(&*opts.progress);
                    let done = with_retry(&files, &what, &progress, || {
                        put_file(
                            &files,
                            (&item.local, opts.storing),
                            &item.remote,
                            item.current.as_ref(),
                            &progress,
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

/// A file of a [`get_all`] that did not arrive.
#[derive(Debug)]
pub struct NotFetched {
    pub remote: RemotePath,
    pub local: PathBuf,
    /// Why; `None` for a file not tried because an earlier error stopped the transfer.
    pub error: Option<FilesError>,
}

/// What [`get_all`] did: the files that arrived (or were there already), and those that
/// failed or were not tried, each in plan order.
#[derive(Debug, Default)]
pub struct GetReport {
    pub done: Vec<Downloaded>,
    pub failed: Vec<NotFetched>,
    pub skipped: Vec<NotFetched>,
}

/// Creates the plan's local directories (noting the target the command makes, for its
/// re-runs), then downloads its files; a file the target already holds is not fetched
/// again ([`Downloaded::unchanged`]). A file that fails (it does not verify, it was deleted
/// meanwhile) does not stop the others; an error that would fail them all
/// ([`FilesError::stops_the_rest`]) does, and the files not tried are reported skipped.
/// Nothing is written for a file that failed or was skipped.
pub async fn get_all(
    files: Arc<Files>,
    plan: GetPlan,
    opts: Options,
) -> Result<GetReport, FilesError> {
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
    let names: Vec<(RemotePath, PathBuf)> = plan
        .files
        .iter()
        .map(|item| (item.remote.clone(), item.local.clone()))
        .collect();
    let outcomes = run_each(
        plan.files,
        in_flight,
        FilesError::stops_the_rest,
        move |item: GetItem| {
            let (files, opts) = (Arc::clone(&files), opts.clone());
            async move {
                let what = item.remote.to_string();
                let progress = Attempt::new(&*opts.progress);
                let done = with_retry(&files, &what, &progress, || {
                    get_file(
                        &files,
                        &item.remote,
                        &item.local,
                        item.current.as_ref(),
                        &progress,
                        opts.limit.as_deref(),
                    )
                })
                .await;
                opts.progress.file_done();
                done
            }
        },
    )
    .await;
    let mut report = GetReport::default();
    for ((remote, local), outcome) in names.into_iter().zip(outcomes) {
        match outcome {
            Outcome::Done(done) => report.done.push(done),
            Outcome::Failed(error) => report.failed.push(NotFetched {
                remote,
                local,
                error: Some(error),
            }),
            Outcome::Skipped => report.skipped.push(NotFetched {
                remote,
                local,
                error: None,
            }),
        }
    }
    Ok(report)
}

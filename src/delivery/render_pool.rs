//! Rendering off the async workers. What one row costs to render is up to its mapping (within
//! the render budget), so rows are rendered on render threads of their own, one per core, at a
//! lower scheduling priority (nice +10) than the threads that serve calls: renders use what CPU
//! the rest leaves, and health checks and every other call keep answering however heavy the
//! renders. Each job is a slice of about two milliseconds of rows; calls rendering at once take
//! the threads in turn (jobs queue first come, first served, one per call at a time). A request
//! small and cheap enough is rendered where it is, without the hop.

use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

/// How long one job renders before it gives its thread back (a row already started finishes).
const SLICE: Duration = Duration::from_millis(2);

/// Renders of flat mappings (copies, no directive computing) a request may do inline.
const INLINE_RENDERS: usize = 32;

/// How much nicer render threads are than the rest of the process.
const NICENESS: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// The render threads' queue; `None` when no thread could be started (jobs then run on tokio's
/// blocking threads).
static POOL: LazyLock<Option<Mutex<mpsc::Sender<Job>>>> = LazyLock::new(start);

fn start() -> Option<Mutex<mpsc::Sender<Job>>> {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = (0..cores)
        .filter(|i| {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("render-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        // One thread waits on the queue, the others on the lock.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| tracing::warn!(error = %e, "could not start a render thread"))
                .is_ok()
        })
        .count();
    (started > 0).then(|| Mutex::new(tx))
}

/// Lowers this thread's scheduling priority (Linux schedules threads on their own).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        let now = rustix::process::getpriority_process(Some(tid)).unwrap_or(0);
        if let Err(e) = rustix::process::setpriority_process(Some(tid), now + NICENESS) {
            tracing::debug!(error = %e, "render thread keeps its priority");
        }
    }
}

/// Whether `renders` renders (rows × mappings) are cheap enough to do on the caller's thread:
/// few, and every mapping `flat` ([`crate::mapping::Mapping::is_flat`]).
pub(crate) fn cheap(renders: usize, flat: bool) -> bool {
    flat && renders <= INLINE_RENDERS
}

/// Runs `step` on `state` until it returns `false` (nothing left: one step is one row), on the
/// render threads a slice at a time, or all at once in place when `inline`.
pub(crate) async fn run<S, F>(mut state: S, inline: bool, step: F) -> S
where
    S: Send + 'static,
    F: Fn(&mut S) -> bool + Send + Sync + 'static,
{
    if inline {
        while step(&mut state) {}
        return state;
    }
    let step = Arc::new(step);
    loop {
        let step = step.clone();
        let (s, more) = on_a_render_thread(move || {
            let until = Instant::now() + SLICE;
            loop {
                if !step(&mut state) {
                    return (state, false);
                }
                if Instant::now() >= until {
                    return (state, true);
                }
            }
        })
        .await;
        state = s;
        if !more {
            return state;
        }
    }
}

/// Runs `job` on a render thread, once one is free; a panic in it is the caller's again.
async fn on_a_render_thread<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        // The caller may have gone (its call was cancelled): then the result is dropped.
        tx.send(panic::catch_unwind(AssertUnwindSafe(job))).ok();
    });
    let queued = match &*POOL {
        Some(queue) => match queue.lock() {
            Ok(queue) => queue.send(job).map_err(|e| e.0),
            Err(_) => Err(job),
        },
        None => Err(job),
    };
    if let Err(job) = queued {
        // No render thread: tokio's blocking threads, still off the async workers.
        drop(tokio::task::spawn_blocking(job));
    }
    match rx.await {
        Ok(Ok(out)) => out,
        Ok(Err(panic)) => panic::resume_unwind(panic),
        // The job was dropped unrun: only when the runtime shuts down, this task with it.
        Err(_) => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every step runs once, in order, whether in slices on the pool or inline; long work is
    /// cut into several slices.
    #[tokio::test]
    async fn runs_every_step_in_slices() {
        for inline in [false, true] {
            let done = run(
                (0u32, Vec::new()),
                inline,
                |(n, seen): &mut (u32, Vec<u32>)| {
                    if *n == 2000 {
                        return false;
                    }
                    seen.push(*n);
                    *n += 1;
                    std::thread::sleep(Duration::from_micros(10));
                    true
                },
            )
            .await;
            assert_eq!(done.1, (0..2000).collect::<Vec<_>>());
        }
    }

    /// A long run gives its thread back after each slice: jobs queued meanwhile take every
    /// render thread, and while they hold them the long run waits (renders at once are bounded
    /// by the threads).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_run_gives_its_thread_back_between_slices() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let steps = Arc::new(AtomicU32::new(0));
        let counted = steps.clone();
        let long = tokio::spawn(run((), false, move |()| {
            std::thread::sleep(Duration::from_millis(1));
            counted.fetch_add(1, Ordering::SeqCst) < 300
        }));
        while steps.load(Ordering::SeqCst) < 5 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let holding = Arc::new(AtomicU32::new(0));
        let mut releases = Vec::new();
        let mut blockers = Vec::new();
        for _ in 0..threads {
            let (release, wait) = std::sync::mpsc::channel::<()>();
            releases.push(release);
            let holding = holding.clone();
            blockers.push(tokio::spawn(on_a_render_thread(move || {
                holding.fetch_add(1, Ordering::SeqCst);
                wait.recv().ok();
            })));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while holding.load(Ordering::SeqCst) < threads as u32 {
            assert!(Instant::now() < deadline, "the long run keeps its thread");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Every thread is held: the long run waits its turn.
        let held = steps.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(steps.load(Ordering::SeqCst), held);
        assert!(held < 300);
        drop(releases);
        for b in blockers {
            b.await.unwrap();
        }
        long.await.unwrap();
        assert_eq!(steps.load(Ordering::SeqCst), 301);
    }

    /// A panic in a job is the caller's, and the render thread survives it.
    #[tokio::test]
    async fn a_panic_is_the_callers() {
        let caught = tokio::spawn(on_a_render_thread(|| panic!("boom"))).await;
        assert!(caught.unwrap_err().is_panic());
        assert_eq!(on_a_render_thread(|| 7).await, 7);
    }

    #[test]
    fn only_small_flat_requests_run_inline() {
        assert!(cheap(1, true));
        assert!(cheap(INLINE_RENDERS, true));
        assert!(!cheap(INLINE_RENDERS + 1, true));
        assert!(!cheap(1, false));
    }
}

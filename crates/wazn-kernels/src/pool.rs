//! A persistent thread pool for data-parallel kernels.
//!
//! One op at a time: the caller hands the pool a task count and a closure; the
//! workers and the caller take task indices from one atomic counter until none are
//! left, and the call returns when every worker has finished with the op (one
//! barrier per op). An op of one task, or any op of a one-thread pool, runs on the
//! caller alone and touches no shared state: it wakes nobody and waits for nobody.
//!
//! A model's forward pass runs a few hundred short ops per token, so waiting threads
//! first spin for a while (`SPIN_TIME`) on an atomic, and only then park on a
//! condition variable: an op that follows closely on the last costs no system call
//! and no lock. The op is published through atomics alone; the mutex is taken only
//! by a thread that parks and by one that finds a parked thread to wake. Each side
//! announces itself (a parked count or flag, then the state it waits on) and then
//! reads the other's announcement, all sequentially consistent, so at least one of
//! the two sees the other: no wake-up is lost, and none is paid for while everyone
//! is spinning.
//!
//! A worker joins an op before it touches it, and the caller closes the op to late
//! joiners once it has run out of tasks itself: it then waits only for the workers that
//! joined. A worker that was slow to wake (or not scheduled at all, on a busy machine)
//! costs the op nothing when the others have done its share.
//!
//! The closure borrows from the caller's stack. That is sound because `run` does not
//! return until every worker that joined the op has finished with it, and no worker
//! can join once the op is closed.

use std::hint::spin_loop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a waiting thread spins before it parks: a few ops' worth of a small model.
const SPIN_TIME: Duration = Duration::from_micros(100);

/// Spins until `done()` holds (true) or [`SPIN_TIME`] has passed (false).
///
/// Between short bursts of spinning it yields the core: when there are more threads
/// than cores (a busy machine, or a pool larger than it), the thread that has the work
/// then gets to run instead of waiting for the spinner's time slice to end.
fn spin_until(done: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            if done() {
                return true;
            }
            spin_loop();
        }
        if start.elapsed() > SPIN_TIME {
            return done();
        }
        std::thread::yield_now();
    }
}

/// The op being run: lives on the stack of `ThreadPool::run` for its whole duration.
struct Op<'a> {
    task: &'a (dyn Fn(usize) + Sync),
    n_tasks: usize,
    next_task: AtomicUsize,
    panicked: AtomicBool,
}

impl Op<'_> {
    /// Takes tasks until none are left. A panicking task is recorded, not propagated
    /// here, so that the barrier at the end of the op is always reached.
    fn work(&self) {
        loop {
            let i = self.next_task.fetch_add(1, Ordering::Relaxed);
            if i >= self.n_tasks {
                break;
            }
            if catch_unwind(AssertUnwindSafe(|| (self.task)(i))).is_err() {
                self.panicked.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// What parking threads wait on; the waits themselves are announced in atomics.
struct Shared {
    /// Only held to park, or to wake a parked thread.
    lock: Mutex<()>,
    op_ready: Condvar,
    op_done: Condvar,
    /// Incremented for every op (and at shutdown), so a worker knows whether it has
    /// seen this one.
    generation: AtomicU64,
    /// The op of `generation`, type-erased. A pointer to an op whose `run` has
    /// returned stays here until the next op replaces it; a worker only dereferences
    /// it after joining the op, which proves the op still runs.
    op: AtomicPtr<Op<'static>>,
    shutdown: AtomicBool,
    /// Workers parked (or about to park) on `op_ready`.
    parked_workers: AtomicUsize,
    /// Whether the caller is parked (or about to park) on `op_done`.
    caller_parked: AtomicBool,
    /// Who joined the current op: its generation tag (`join_tag`), the [`CLOSED`] bit,
    /// and the count of workers that joined (below [`CLOSED`]).
    join: AtomicU64,
    /// Workers that joined the current op and have finished with it.
    finished: AtomicUsize,
}

/// Set in `Shared::join` once the caller has run out of tasks: no more workers join.
const CLOSED: u64 = 1 << 23;
/// The joined-worker count in `Shared::join`.
const JOIN_COUNT: u64 = CLOSED - 1;

/// The generation as it is stored in the bits of `Shared::join` above the count and
/// the closed bit (the low 40 bits of the generation: ops never lag that far).
fn join_tag(generation: u64) -> u64 {
    generation.wrapping_shl(24)
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ()> {
        // A poisoned lock only means some thread panicked while holding it; it guards
        // no data, so carry on.
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, condvar: &Condvar, guard: MutexGuard<'a, ()>) -> MutexGuard<'a, ()> {
        condvar.wait(guard).unwrap_or_else(|e| e.into_inner())
    }
}

/// A fixed set of worker threads plus the calling thread.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    n_threads: usize,
}

impl ThreadPool {
    /// A pool that runs ops on `n_threads` threads in all: the caller and
    /// `n_threads - 1` workers. `n_threads` of 0 is taken as 1. Fails only if the
    /// operating system refuses to start a thread.
    pub fn new(n_threads: usize) -> std::io::Result<ThreadPool> {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            lock: Mutex::new(()),
            op_ready: Condvar::new(),
            op_done: Condvar::new(),
            generation: AtomicU64::new(0),
            op: AtomicPtr::new(std::ptr::null_mut()),
            shutdown: AtomicBool::new(false),
            parked_workers: AtomicUsize::new(0),
            caller_parked: AtomicBool::new(false),
            join: AtomicU64::new(join_tag(0) | CLOSED),
            finished: AtomicUsize::new(0),
        });
        let workers = (1..n_threads)
            .map(|i| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("wazn-worker-{i}"))
                    .spawn(move || worker_loop(&shared))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(ThreadPool {
            shared,
            workers,
            n_threads,
        })
    }

    /// Threads that take part in an op (workers plus the caller).
    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Runs `task(i)` for every `i` in `0..n_tasks`, spread over the pool's threads,
    /// and returns when all are done. Panics (after the op has finished everywhere)
    /// if any task panicked. One task runs on the calling thread alone.
    pub fn run(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        if n_tasks == 0 {
            return;
        }
        let op = Op {
            task,
            n_tasks,
            next_task: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
        };
        if self.workers.is_empty() || n_tasks == 1 {
            op.work();
        } else {
            self.run_shared(&op);
        }
        if op.panicked.load(Ordering::Relaxed) {
            panic!("a task of a thread-pool op panicked");
        }
    }

    /// Publishes `op` to the workers, works on it, and waits for those who joined.
    fn run_shared(&self, op: &Op<'_>) {
        let shared = &*self.shared;
        // SAFETY: the lifetime is erased only for the duration of this call; the
        // wait below keeps `op` alive until no worker that joined it holds it, and
        // closing the op keeps any other worker from joining.
        let ptr = std::ptr::from_ref(op).cast::<Op<'static>>().cast_mut();
        // Only this thread writes the generation (besides shutdown, which needs
        // `&mut self`).
        let generation = shared.generation.load(Ordering::Relaxed).wrapping_add(1);
        // The join word and the pointer before the generation: a worker that sees
        // the new generation sees this op; one that sees this op's pointer before
        // its generation fails to join the generation it did see.
        shared.finished.store(0, Ordering::SeqCst);
        shared.join.store(join_tag(generation), Ordering::SeqCst);
        shared.op.store(ptr, Ordering::SeqCst);
        shared.generation.store(generation, Ordering::SeqCst);
        if shared.parked_workers.load(Ordering::SeqCst) > 0 {
            // Taking the lock waits until a worker that announced itself is parked.
            let _guard = shared.lock();
            shared.op_ready.notify_all();
        }
        op.work();
        // No task is left: close the op, then wait for those who joined.
        let joined = (shared.join.fetch_or(CLOSED, Ordering::SeqCst) & JOIN_COUNT) as usize;
        let all_done = || shared.finished.load(Ordering::SeqCst) == joined;
        if !spin_until(all_done) {
            let mut guard = shared.lock();
            shared.caller_parked.store(true, Ordering::SeqCst);
            while !all_done() {
                guard = shared.wait(&shared.op_done, guard);
            }
            shared.caller_parked.store(false, Ordering::SeqCst);
        }
    }

    /// Splits `0..n` into contiguous chunks of at most `chunk` and runs
    /// `task(start, end)` for each, in parallel.
    pub fn run_chunks(&self, n: usize, chunk: usize, task: &(dyn Fn(usize, usize) + Sync)) {
        let chunk = chunk.max(1);
        let n_chunks = n.div_ceil(chunk);
        self.run(n_chunks, &|c| {
            let start = c * chunk;
            task(start, (start + chunk).min(n));
        });
    }
}

fn worker_loop(shared: &Shared) {
    let mut seen_generation = 0u64;
    let new_op = |seen: u64| shared.generation.load(Ordering::SeqCst) != seen;
    loop {
        if !spin_until(|| new_op(seen_generation)) {
            let mut guard = shared.lock();
            shared.parked_workers.fetch_add(1, Ordering::SeqCst);
            while !new_op(seen_generation) {
                guard = shared.wait(&shared.op_ready, guard);
            }
            shared.parked_workers.fetch_sub(1, Ordering::SeqCst);
        }
        if shared.shutdown.load(Ordering::SeqCst) {
            return;
        }
        // The generation, then the op: the op read is this generation's or a later
        // one's, and joining fails for a generation whose op has been replaced.
        let generation = shared.generation.load(Ordering::SeqCst);
        let ptr = shared.op.load(Ordering::SeqCst);
        seen_generation = generation;
        if ptr.is_null() || !join(shared, generation) {
            // Closed (the others did the work) or already replaced: not ours to touch.
            continue;
        }
        // SAFETY: this worker joined the op while it was open, so `run` waits for the
        // `finished` count below before the op goes out of scope.
        let op = unsafe { &*ptr };
        op.work();
        let finished = shared.finished.fetch_add(1, Ordering::SeqCst) + 1;
        let join_word = shared.join.load(Ordering::SeqCst);
        if join_word & CLOSED != 0
            && finished as u64 == join_word & JOIN_COUNT
            && shared.caller_parked.load(Ordering::SeqCst)
        {
            // The last worker out wakes the caller, which announced that it parks.
            // Taking the lock waits until it is parked (a stale word from a later op
            // can only cause a spurious wake-up, which the caller re-checks).
            let _guard = shared.lock();
            shared.op_done.notify_one();
        }
    }
}

/// Joins the op of `generation` if it is still open; false if it is closed or gone.
fn join(shared: &Shared, generation: u64) -> bool {
    let open = join_tag(generation);
    let mut word = shared.join.load(Ordering::SeqCst);
    loop {
        // Another generation's tag, or the closed bit, fails the comparison.
        if word & !JOIN_COUNT != open {
            return false;
        }
        match shared
            .join
            .compare_exchange_weak(word, word + 1, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => return true,
            Err(current) => word = current,
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        {
            let _guard = self.shared.lock();
            self.shared.shutdown.store(true, Ordering::SeqCst);
            self.shared.generation.fetch_add(1, Ordering::SeqCst);
        }
        self.shared.op_ready.notify_all();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// A raw pointer to an output buffer that tasks of one op write disjoint parts of.
#[derive(Clone, Copy)]
pub struct SyncMutPtr<T>(*mut T);

// SAFETY: users promise that concurrent tasks write disjoint indices.
unsafe impl<T: Send> Send for SyncMutPtr<T> {}
unsafe impl<T: Send> Sync for SyncMutPtr<T> {}

impl<T> SyncMutPtr<T> {
    pub fn new(slice: &mut [T]) -> Self {
        SyncMutPtr(slice.as_mut_ptr())
    }

    /// # Safety
    /// `start..start + len` must lie inside the slice this pointer was made from, and
    /// no other task of the same op may access that range.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice_mut(&self, start: usize, len: usize) -> &mut [T] {
        std::slice::from_raw_parts_mut(self.0.add(start), len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn every_task_runs_exactly_once() {
        for n_threads in [1, 2, 3, 5] {
            let pool = ThreadPool::new(n_threads).unwrap();
            for n_tasks in [0, 1, 2, 7, 100, 1001] {
                let hits: Vec<AtomicUsize> = (0..n_tasks).map(|_| AtomicUsize::new(0)).collect();
                pool.run(n_tasks, &|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
            }
        }
    }

    #[test]
    fn many_short_ops_neither_deadlock_nor_lose_work() {
        let pool = ThreadPool::new(4).unwrap();
        let total = AtomicU64::new(0);
        for op in 0..20_000u64 {
            pool.run(3, &|i| {
                total.fetch_add(op + i as u64, Ordering::Relaxed);
            });
        }
        let expected: u64 = (0..20_000u64).map(|op| 3 * op + 3).sum();
        assert_eq!(total.load(Ordering::Relaxed), expected);
    }

    #[test]
    fn ops_after_the_threads_parked_still_run() {
        // Gaps longer than the spin time send workers (and the caller, when a task is
        // slow) to the condition variables; no wake-up may be lost.
        let pool = ThreadPool::new(3).unwrap();
        let total = AtomicUsize::new(0);
        for op in 0..30 {
            std::thread::sleep(SPIN_TIME * (op % 3) as u32);
            pool.run(4, &|i| {
                if i == 3 && op % 2 == 0 {
                    std::thread::sleep(SPIN_TIME * 2);
                }
                total.fetch_add(1, Ordering::Relaxed);
            });
        }
        assert_eq!(total.load(Ordering::Relaxed), 30 * 4);
    }

    #[test]
    fn one_task_ops_run_on_the_caller_and_mix_with_shared_ops() {
        let pool = ThreadPool::new(3).unwrap();
        let caller = std::thread::current().id();
        let total = AtomicUsize::new(0);
        for op in 0..5_000 {
            let n_tasks = if op % 3 == 0 { 4 } else { 1 };
            pool.run(n_tasks, &|_| {
                if n_tasks == 1 {
                    assert_eq!(std::thread::current().id(), caller);
                }
                total.fetch_add(1, Ordering::Relaxed);
            });
            if op % 1000 == 999 {
                // Let the workers park between bursts of inline ops.
                std::thread::sleep(SPIN_TIME * 3);
            }
        }
        let shared_ops = (0..5_000).filter(|op| op % 3 == 0).count();
        assert_eq!(
            total.load(Ordering::Relaxed),
            4 * shared_ops + (5_000 - shared_ops)
        );
    }

    #[test]
    fn a_one_thread_pool_runs_everything_on_the_caller() {
        let pool = ThreadPool::new(1).unwrap();
        let caller = std::thread::current().id();
        let count = AtomicUsize::new(0);
        pool.run(50, &|_| {
            assert_eq!(std::thread::current().id(), caller);
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 50);
    }

    #[test]
    fn a_pool_whose_workers_parked_shuts_down() {
        for n_threads in [2, 4] {
            let pool = ThreadPool::new(n_threads).unwrap();
            pool.run(8, &|_| {});
            std::thread::sleep(SPIN_TIME * 5);
            drop(pool);
        }
    }

    #[test]
    fn chunks_cover_the_range_once() {
        let pool = ThreadPool::new(3).unwrap();
        let mut out = vec![0u32; 1000];
        let ptr = SyncMutPtr::new(&mut out);
        pool.run_chunks(1000, 64, &|start, end| {
            // SAFETY: chunks are disjoint and inside the slice.
            let part = unsafe { ptr.slice_mut(start, end - start) };
            for (k, v) in part.iter_mut().enumerate() {
                *v += (start + k) as u32;
            }
        });
        assert!(out.iter().enumerate().all(|(i, &v)| v == i as u32));
    }

    #[test]
    fn a_panicking_task_is_reported_and_the_pool_still_works() {
        let pool = ThreadPool::new(2).unwrap();
        let result = catch_unwind(AssertUnwindSafe(|| {
            pool.run(8, &|i| {
                if i == 5 {
                    panic!("boom");
                }
            })
        }));
        assert!(result.is_err());
        let count = AtomicUsize::new(0);
        pool.run(10, &|_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 10);
    }
}

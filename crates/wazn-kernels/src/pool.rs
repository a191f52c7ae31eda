//! A persistent thread pool for data-parallel kernels.
//!
//! One op at a time: the caller hands the pool a task count and a closure; the
//! workers and the caller take task indices from one atomic counter until none are
//! left, and the call returns when every worker has finished with the op (one
//! barrier per op). Workers sleep on a condition variable between ops.
//!
//! The closure borrows from the caller's stack. That is sound because `run` does not
//! return until every worker has acknowledged the op, so no worker can touch the
//! closure after the borrow ends.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

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

/// A type-erased pointer to the current `Op`; only dereferenced while `run` waits.
#[derive(Clone, Copy)]
struct OpPtr(*const Op<'static>);

// SAFETY: the pointee is only read through shared references, and `run` keeps it
// alive until every worker has signalled that it is done with it.
unsafe impl Send for OpPtr {}

struct State {
    /// Incremented for every op, so a worker knows whether it has seen this one.
    generation: u64,
    op: Option<OpPtr>,
    /// Workers that have not yet finished the current op.
    busy_workers: usize,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    op_ready: Condvar,
    op_done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means some thread panicked while holding it; the state
        // itself is always left consistent, so carry on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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
            state: Mutex::new(State {
                generation: 0,
                op: None,
                busy_workers: 0,
                shutdown: false,
            }),
            op_ready: Condvar::new(),
            op_done: Condvar::new(),
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
    /// if any task panicked.
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
            // SAFETY: the lifetime is erased only for the duration of this call; the
            // wait below keeps `op` alive until no worker holds the pointer.
            let ptr = OpPtr(std::ptr::from_ref(&op).cast::<Op<'static>>());
            {
                let mut state = self.shared.lock();
                state.generation = state.generation.wrapping_add(1);
                state.op = Some(ptr);
                state.busy_workers = self.workers.len();
            }
            self.shared.op_ready.notify_all();
            op.work();
            let mut state = self.shared.lock();
            while state.busy_workers > 0 {
                state = self
                    .shared
                    .op_done
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner());
            }
            state.op = None;
        }
        if op.panicked.load(Ordering::Relaxed) {
            panic!("a task of a thread-pool op panicked");
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
    loop {
        let ptr = {
            let mut state = shared.lock();
            loop {
                if state.shutdown {
                    return;
                }
                if state.generation != seen_generation {
                    if let Some(ptr) = state.op {
                        seen_generation = state.generation;
                        break ptr;
                    }
                }
                state = shared
                    .op_ready
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner());
            }
        };
        // SAFETY: `run` keeps the op alive until `busy_workers` reaches zero, which
        // cannot happen before this worker decrements it below.
        let op = unsafe { &*ptr.0 };
        op.work();
        let mut state = shared.lock();
        state.busy_workers -= 1;
        if state.busy_workers == 0 {
            shared.op_done.notify_all();
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
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

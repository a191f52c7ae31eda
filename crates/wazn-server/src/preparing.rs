//! Where requests are prepared: rendering a chat template and tokenizing, the CPU work before
//! a request reaches the engine.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Runs request preparation on the blocking pool, a bounded number at once.
///
/// Off the async workers, a large prompt holds up no one else: `/health` and every other
/// client keep being answered. Bounded, because each render may spend its whole budget (up to
/// several hundred MB for a hostile template and a body at the size limit): without a bound,
/// a flood of such requests would run as many renders as the blocking pool has threads (512).
/// Requests beyond the bound wait their turn without holding a thread.
pub(crate) struct PrepareSlots(Arc<Semaphore>);

impl PrepareSlots {
    /// As many slots as cores, between 2 and 8: more renders at once than cores gain nothing.
    pub(crate) fn for_this_machine() -> PrepareSlots {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        PrepareSlots::new(cores.clamp(2, 8))
    }

    pub(crate) fn new(n: usize) -> PrepareSlots {
        PrepareSlots(Arc::new(Semaphore::new(n)))
    }

    /// Runs `work` once a slot is free. The slot is held until `work` ends, even when the
    /// caller stops waiting for it (a client that went away).
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let slot = Arc::clone(&self.0)
            .acquire_owned()
            .await
            .map_err(|e| ApiError::internal(format!("preparing the request failed: {e}")))?;
        tokio::task::spawn_blocking(move || {
            let result = work();
            drop(slot);
            result
        })
        .await
        .map_err(|e| ApiError::internal(format!("preparing the request failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_run_at_once_than_there_are_slots() {
        let slots = Arc::new(PrepareSlots::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (slots, running, most) = (slots.clone(), running.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                slots
                    .run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(30));
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok(())
                    })
                    .await
            }));
        }
        for task in tasks {
            task.await
                .expect("the task ends")
                .expect("the work succeeds");
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_caller_that_stops_waiting_keeps_the_slot_until_the_work_ends() {
        let slots = Arc::new(PrepareSlots::new(1));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let waiting = {
            let slots = slots.clone();
            tokio::spawn(async move {
                slots
                    .run(move || {
                        started_tx.send(()).ok();
                        release_rx.recv().ok();
                        Ok(())
                    })
                    .await
            })
        };
        tokio::task::spawn_blocking(move || started_rx.recv())
            .await
            .expect("join")
            .expect("the work started");
        waiting.abort();
        assert_eq!(slots.0.available_permits(), 0, "the work still runs");
        release_tx.send(()).expect("release the work");
        let free = async {
            while slots.0.available_permits() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), free)
            .await
            .expect("the slot comes back once the work ends");
    }
}

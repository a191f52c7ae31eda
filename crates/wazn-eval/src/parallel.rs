//! Mapping a list over a few threads between engine steps, when the engine's own pool
//! is idle, keeping the order of the list.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// `items.map(f)` on up to `n_threads` threads; results in the order of `items`.
pub fn parallel_map<T: Send, R: Send>(
    items: Vec<T>,
    n_threads: usize,
    f: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    let n_threads = n_threads.clamp(1, items.len().max(1));
    if n_threads == 1 {
        return items.into_iter().map(f).collect();
    }
    let slots: Vec<Mutex<(Option<T>, Option<R>)>> = items
        .into_iter()
        .map(|item| Mutex::new((Some(item), None)))
        .collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..n_threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(slot) = slots.get(i) else { break };
                let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(item) = slot.0.take() {
                    slot.1 = Some(f(item));
                }
            });
        }
    });
    slots
        .into_iter()
        .filter_map(|slot| slot.into_inner().unwrap_or_else(|e| e.into_inner()).1)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parallel_map;

    #[test]
    fn keeps_the_order_of_the_list() {
        let squares = parallel_map((0..1000u64).collect(), 3, |x| x * x);
        assert_eq!(squares, (0..1000u64).map(|x| x * x).collect::<Vec<_>>());
        assert!(parallel_map(Vec::<u8>::new(), 4, |x| x).is_empty());
    }
}

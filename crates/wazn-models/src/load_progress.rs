//! How far a model's load has got, for a caller that shows it (the command line draws a bar
//! on a terminal): the bytes of weights read, and repacked or converted where the kernels
//! want another layout, which is most of the seconds a large model takes to load.
//!
//! The weights are read by every architecture's loader, through [`crate::weights::Weights`];
//! the observer reaches them through the loading thread, so the loaders' signatures need not
//! carry it.

use std::cell::RefCell;
use std::rc::Rc;

/// Told of a load's progress, on the loading thread.
pub trait LoadProgress {
    /// The load will read about `total_bytes` of weights (every tensor of the source).
    fn begin(&self, total_bytes: u64);
    /// `bytes` more of them were read.
    fn advance(&self, bytes: u64);
}

thread_local! {
    static OBSERVER: RefCell<Option<Rc<dyn LoadProgress>>> = const { RefCell::new(None) };
}

/// Runs `load` with `progress` told of the weights it reads on this thread; the observer
/// before it (normally none) is back afterwards, also if `load` panics.
pub fn observe_load<R>(progress: Rc<dyn LoadProgress>, load: impl FnOnce() -> R) -> R {
    let previous = OBSERVER.replace(Some(progress));
    let _restore = Restore(previous);
    load()
}

struct Restore(Option<Rc<dyn LoadProgress>>);

impl Drop for Restore {
    fn drop(&mut self) {
        OBSERVER.set(self.0.take());
    }
}

/// The current observer, if any; cloned out so that it runs without the cell borrowed.
fn observer() -> Option<Rc<dyn LoadProgress>> {
    OBSERVER.with_borrow(Option::clone)
}

pub(crate) fn begin(total_bytes: u64) {
    if let Some(observer) = observer() {
        observer.begin(total_bytes);
    }
}

pub(crate) fn advance(bytes: u64) {
    if let Some(observer) = observer() {
        observer.advance(bytes);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[derive(Default)]
    struct Tally {
        total: Cell<u64>,
        done: Cell<u64>,
    }

    impl LoadProgress for Tally {
        fn begin(&self, total_bytes: u64) {
            self.total.set(total_bytes);
        }
        fn advance(&self, bytes: u64) {
            self.done.set(self.done.get() + bytes);
        }
    }

    #[test]
    fn the_observer_hears_only_what_runs_inside_it() {
        let tally = Rc::new(Tally::default());
        advance(5);
        observe_load(tally.clone(), || {
            begin(100);
            advance(30);
            advance(70);
        });
        advance(7);
        assert_eq!((tally.total.get(), tally.done.get()), (100, 100));
        let panicking_load = || observe_load(tally.clone(), || panic!("a load"));
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(panicking_load));
        advance(1);
        assert_eq!(
            tally.done.get(),
            100,
            "the observer outlived a panicked load"
        );
    }
}

//! A chat template is code from a model file, and one that doubles a string thirty times once
//! took 2.6 GB and seconds on every request. Its render now stops at the budget's bytes: what
//! it allocates at its peak is held to the strings that budget pays for.
//!
//! The whole test binary counts its heap through one allocator, so this file holds one test:
//! another running beside it would add to the count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use wazn_text::template_budget::{render_fuel, BYTES_PER_FUEL};
use wazn_text::{ChatMessage, ChatTemplate, TextError};

/// The system allocator, counting the bytes in use and the most ever in use.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = IN_USE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call goes straight to `System` with the caller's arguments; the counters
// only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn doubling_a_string_costs_no_more_than_the_budget_pays_for() {
    let messages = [ChatMessage::new("user", "hi")];
    let budget_bytes = render_fuel(&messages, None) * BYTES_PER_FUEL;
    for doubling in [
        "{% set ns = namespace(s='x') %}{% for i in range(30) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "{% set ns = namespace(s='x') %}{% for i in range(30) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
        "{% set ns = namespace(s='x') %}{% for i in range(30) %}{% set ns.s = [ns.s, ns.s] | join %}{% endfor %}",
        "{% macro d(s, n) %}{% if n > 0 %}{{ d(s ~ s, n - 1) }}{% endif %}{% endmacro %}{{ d('x', 30) }}",
    ] {
        let template = ChatTemplate::new(doubling, "", "").expect("the template compiles");
        let before = IN_USE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let rendered = template.render(&messages, true);
        let peak = PEAK.load(Ordering::Relaxed) - before;
        assert!(
            matches!(&rendered, Err(TextError::TemplateRender(m)) if m.contains("budget")),
            "{doubling}: {rendered:?}"
        );
        // Strings made are paid for before they exist; `join` grows its buffer by doubling,
        // so its capacity may reach twice what was paid.
        assert!(
            peak as u64 <= 2 * budget_bytes,
            "{doubling}: peak {peak} bytes, the budget pays for {budget_bytes}"
        );
    }
}

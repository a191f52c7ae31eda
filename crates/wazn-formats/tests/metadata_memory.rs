//! A metadata array costs memory in proportion to its bytes in the file. A GGUF file is
//! untrusted, and one with a 100 MB array of u8 once cost 3.3 GB (a 32-byte value per
//! element). Both what the parsed array reports holding and what parsing allocates at its
//! peak are held to a small multiple of the array's encoded size.
//!
//! The whole test binary counts its heap through one allocator, so this file holds one test:
//! another running beside it would add to the count.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::Raw;
use wazn_formats::GgufHeader;

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

/// A file with one metadata key "big": an array of `count` elements of type `type_id`, each
/// encoded as `element`. Returns the file and the array's encoded size.
fn file_with_array(type_id: u32, count: u64, element: &[u8]) -> (Vec<u8>, usize) {
    let head = Raw::header(3, 0, 1).str("big").u32(9);
    let start = head.0.len();
    let mut raw = head.u32(type_id).u64(count);
    raw.0.reserve(element.len() * count as usize + 32);
    for _ in 0..count {
        raw.0.extend_from_slice(element);
    }
    let encoded = raw.0.len() - start;
    (raw.pad(32).0, encoded)
}

/// Parses `bytes`; returns the length and element type id of the array under "big", the
/// bytes it holds on the heap, and the most bytes the parse had allocated at once.
fn parse_counting(bytes: &[u8]) -> (u64, u32, usize, usize) {
    let before = IN_USE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let header = GgufHeader::parse(bytes).expect("a valid file");
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let array = header
        .metadata
        .get("big")
        .and_then(|v| v.as_array())
        .expect("an array");
    (
        array.len() as u64,
        array.element_type().id(),
        array.heap_bytes(),
        peak,
    )
}

#[test]
fn metadata_arrays_cost_memory_in_proportion_to_the_file() {
    // (what, type id, count, one element's encoding, factor allowed)
    let one_a = [1u64.to_le_bytes().as_slice(), b"a"].concat();
    let empty_u8_array = [0u32.to_le_bytes().as_slice(), &0u64.to_le_bytes()].concat();
    let cases: [(&str, u32, u64, &[u8], usize); 5] = [
        ("64 MiB of UINT8", 0, 64 << 20, &[7], 2),
        ("FLOAT32", 6, 4 << 20, &1.5f32.to_le_bytes(), 2),
        ("BOOL", 7, 8 << 20, &[1], 2),
        // A String is 24 bytes beside its text, against 8 bytes of length in the file.
        ("one-byte STRINGs", 8, 2 << 20, &one_a, 3),
        // An inner array is a 32-byte value, against 12 bytes of type and count.
        ("empty inner ARRAYs", 9, 1 << 20, &empty_u8_array, 3),
    ];
    for (what, type_id, count, element, factor) in cases {
        let (bytes, encoded) = file_with_array(type_id, count, element);
        let (len, element_type, heap, peak) = parse_counting(&bytes);
        assert_eq!((len, element_type), (count, type_id), "{what}");
        assert!(
            heap <= factor * encoded,
            "{what}: the parsed array holds {heap} bytes for {encoded} in the file"
        );
        // The parse allocated at least what it keeps: the counting sees every allocation.
        assert!(heap >= encoded / 2 && peak >= heap, "{what}: {heap} {peak}");
        assert!(
            peak <= factor * encoded,
            "{what}: parsing allocated {peak} bytes at its peak for {encoded} in the file"
        );
    }
}

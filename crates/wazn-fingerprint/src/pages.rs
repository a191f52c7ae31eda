//! Large zeroed buffers on transparent huge pages where Linux offers them on request.
//!
//! A comparison allocates and frees matrices of tens of MiB per layer (dequantized weights,
//! Gram matrices, products); on 4 KiB pages each one costs thousands of page faults, each a
//! trip into the kernel, which at Llama-3.1-8B's shapes added up to a sixth of the run. On
//! 2 MiB pages the same memory faults 512 times less often. The advice is only advice: where
//! it is refused (another OS, huge pages turned off) the buffer is the same, on small pages.

/// Buffers smaller than this stay on small pages (a huge page would be mostly empty).
const MIN_HUGE_BYTES: usize = 8 << 20;

/// `len` zeros, with the kernel asked to back them with huge pages.
pub fn zeroed(len: usize) -> Vec<f32> {
    // The allocator gets fresh, untouched pages from the kernel for a buffer this large, and
    // the advice must come before the first write to them.
    let data = vec![0f32; len];
    advise_huge(&data);
    data
}

#[cfg(target_os = "linux")]
fn advise_huge(data: &[f32]) {
    const HUGE: usize = 2 << 20;
    let bytes = std::mem::size_of_val(data);
    if bytes < MIN_HUGE_BYTES {
        return;
    }
    let start = data.as_ptr() as usize;
    let first = start.next_multiple_of(HUGE);
    let end = (start + bytes) / HUGE * HUGE;
    if end <= first {
        return;
    }
    // SAFETY: [first, end) lies inside `data`'s allocation; MADV_HUGEPAGE changes how its
    // pages are backed, never their contents or the mapping.
    unsafe {
        libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge(_data: &[f32]) {}

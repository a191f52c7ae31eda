//! Matrix-product throughput on SmolLM2-135M's shapes, for 1 activation row (decode),
//! 8 rows (a decode step of 8 sequences) and 64 / 512 rows (prompt processing), and on
//! the shapes and types of Llama-3.1-8B (Q4_K_M and the other llama.cpp mixes) and
//! gpt-oss-20b (MXFP4 experts) and Qwen3-30B-A3B's experts (Q4_K_M), for 1, 8 and 64 rows
//! (shape names start `8b` / `20b` / `30b`).
//!
//! Run: `cargo bench -p wazn-kernels --bench matmul [-- THREADS] [SHAPE]` (default 2
//! threads, every shape; SHAPE keeps the shapes whose name contains it).
//! Prints, per case, the time per product, the weight bytes read per second and the
//! multiply-adds per second (counted as 2 FLOP each), for the fastest of many runs.
//! `WAZN_KERNELS=scalar` measures the scalar reference kernels. Types with a packed
//! layout are measured twice: as stored (`rows`) and packed (`packed`).

use std::time::{Duration, Instant};

use wazn_kernels::{matmul, packed, Activations, DType, ThreadPool, WeightMatrix};

fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// Byte offsets of a block's f16 scales, for the types wazn does not quantize to.
fn scale_offsets(dtype: DType) -> &'static [usize] {
    match dtype {
        DType::Q4_K | DType::Q5_K | DType::Q2_K => &[0, 2],
        DType::Q6_K => &[208],
        DType::Q3_K => &[108],
        _ => &[],
    }
}

/// Random weights `[n_rows, n_cols]` quantized to `dtype` (for the k-quants, random
/// bytes with ordinary f16 scales: the speed does not depend on the values).
fn weights(dtype: DType, n_rows: usize, n_cols: usize, seed: &mut u64) -> Vec<u8> {
    let row_bytes = dtype.row_bytes(n_cols).expect("whole blocks");
    let mut bytes = vec![0u8; n_rows * row_bytes];
    let Some(quantize) = dtype.traits().from_f32 else {
        bytes
            .iter_mut()
            .for_each(|b| *b = (lcg(seed) * 127.0) as i8 as u8);
        for block in bytes.chunks_exact_mut(dtype.type_size()) {
            for &at in scale_offsets(dtype) {
                let scale = half::f16::from_f32(0.002 + 0.001 * lcg(seed));
                block[at..at + 2].copy_from_slice(&scale.to_bits().to_le_bytes());
            }
        }
        return bytes;
    };
    let mut row = vec![0.0f32; n_cols];
    for dst in bytes.chunks_exact_mut(row_bytes) {
        row.iter_mut().for_each(|v| *v = lcg(seed));
        quantize(&row, dst);
    }
    bytes
}

/// Nanoseconds this thread has run on a CPU (the first field of its schedstat), or
/// None where the kernel does not say.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Fastest seconds per call of `f`, run for about `budget` (the machine may be shared:
/// the fastest run is the one least disturbed), and the mean seconds per call that the
/// calling thread spent on a CPU (with one thread, the whole product: time taken by
/// other processes does not count, so the figure holds on a busy machine).
fn time_it(budget: Duration, mut f: impl FnMut()) -> (f64, Option<f64>) {
    f();
    let mut samples = Vec::new();
    let cpu_start = thread_cpu_ns();
    let start = Instant::now();
    while start.elapsed() < budget || samples.len() < 3 {
        let t = Instant::now();
        f();
        samples.push(t.elapsed().as_secs_f64());
    }
    let cpu = cpu_start
        .zip(thread_cpu_ns())
        .map(|(a, b)| b.saturating_sub(a) as f64 * 1e-9 / samples.len() as f64);
    (samples.into_iter().fold(f64::INFINITY, f64::min), cpu)
}

fn main() {
    let n_threads: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2);
    // Any other argument selects the shapes whose name contains it (e.g. `f16`).
    let filter: Option<String> = std::env::args()
        .skip(1)
        .find(|a| a.parse::<usize>().is_err() && !a.starts_with('-'));
    let pool = ThreadPool::new(n_threads).expect("thread pool");
    let shapes: [(&str, DType, usize, usize); 21] = [
        ("attn_q/o 576x576", DType::Q4_1, 576, 576),
        ("attn_k/v 192x576", DType::Q4_1, 192, 576),
        ("ffn_up 1536x576", DType::Q4_1, 1536, 576),
        ("ffn_down 576x1536", DType::Q4_1, 576, 1536),
        ("output 49152x576", DType::Q8_0, 49152, 576),
        ("q8_0 1536x576", DType::Q8_0, 1536, 576),
        ("f16 1536x576", DType::F16, 1536, 576),
        ("f16 576x1536", DType::F16, 576, 1536),
        ("bf16 1536x576", DType::BF16, 1536, 576),
        ("8b q4_k 4096x4096", DType::Q4_K, 4096, 4096),
        ("8b q4_k 14336x4096", DType::Q4_K, 14336, 4096),
        ("8b q6_k 4096x14336", DType::Q6_K, 4096, 14336),
        ("8b q5_k 4096x4096", DType::Q5_K, 4096, 4096),
        ("8b q4_0 4096x4096", DType::Q4_0, 4096, 4096),
        ("8b q5_0 4096x4096", DType::Q5_0, 4096, 4096),
        ("8b q5_1 4096x4096", DType::Q5_1, 4096, 4096),
        ("8b q8_0 4096x4096", DType::Q8_0, 4096, 4096),
        ("20b mxfp4 2880x2880", DType::Mxfp4, 2880, 2880),
        ("30b-a3b q4_k 768x2048", DType::Q4_K, 768, 2048),
        ("30b-a3b q4_k 2048x768", DType::Q4_K, 2048, 768),
        ("30b-a3b q6_k 2048x768", DType::Q6_K, 2048, 768),
    ];
    println!(
        "threads: {n_threads}, kernels: {}",
        wazn_kernels::Isa::best().name()
    );
    println!(
        "{:<20} {:>5} {:>6} {:>6} {:>11} {:>9} {:>9} {:>11} {:>9}",
        "shape",
        "dtype",
        "layout",
        "rows",
        "us/product",
        "GB/s",
        "GFLOP/s",
        "cpu us",
        "GFLOP/cpu-s"
    );
    let mut seed = 1u64;
    for (name, dtype, n_rows, n_cols) in shapes {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let w_bytes = weights(dtype, n_rows, n_cols, &mut seed);
        let packed_bytes = packed::worth_packing(dtype)
            .then(|| packed::pack(dtype, &w_bytes, n_rows, n_cols))
            .flatten();
        let mut layouts = vec![(
            "rows",
            WeightMatrix::new(dtype, &w_bytes, n_rows, n_cols).expect("shape"),
        )];
        if let Some(bytes) = &packed_bytes {
            let w = WeightMatrix::packed(dtype, bytes, n_rows, n_cols).expect("shape");
            layouts.push(("packed", w));
        }
        for ((layout, w), n_x) in layouts
            .iter()
            .flat_map(|l| [1usize, 8, 64, 512].map(|n_x| (l, n_x)))
        {
            let real_size =
                name.starts_with("8b") || name.starts_with("20b") || name.starts_with("30b");
            if (n_rows >= 49152 || real_size) && n_x > 64 {
                continue;
            }
            let x: Vec<f32> = (0..n_x * n_cols).map(|_| lcg(&mut seed)).collect();
            let mut out = vec![0.0f32; n_x * n_rows];
            let mut scratch = Vec::new();
            let budget = Duration::from_millis(if n_x == 1 { 300 } else { 600 });
            let (seconds, cpu_seconds) = time_it(budget, || {
                matmul(
                    &pool,
                    w,
                    &x,
                    n_x,
                    &mut out,
                    &mut scratch,
                    Activations::Quantized,
                );
            });
            let gb_per_s = w_bytes.len() as f64 / seconds / 1e9;
            let gflop_per_s = 2.0 * (n_x * n_rows * n_cols) as f64 / seconds / 1e9;
            // With one thread the caller runs every task: its CPU time is the product's.
            let (cpu_us, cpu_gflop) = match cpu_seconds.filter(|_| n_threads == 1) {
                Some(c) => (
                    format!("{:.1}", c * 1e6),
                    format!("{:.2}", 2.0 * (n_x * n_rows * n_cols) as f64 / c / 1e9),
                ),
                None => ("-".to_string(), "-".to_string()),
            };
            println!(
                "{name:<20} {:>5} {layout:>6} {n_x:>6} {:>11.1} {gb_per_s:>9.2} {gflop_per_s:>9.2} {cpu_us:>11} {cpu_gflop:>9}",
                dtype.name(),
                seconds * 1e6
            );
        }
    }
}

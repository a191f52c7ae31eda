//! K-quant dot products: a 2048x2048 matrix-vector product per weight type on one thread,
//! with every kernel level this CPU runs (scalar reference, AVX2), Q4_1 for scale, Q5_0 /
//! Q5_1 (what llama.cpp's K-quant mixes use for rows that are not whole super-blocks), the same
//! matrix against 4 activation rows (`vec_dot_x4` where a level has it), and the cost of
//! quantizing the activation row to its dot partner type.
//!
//! Run: `cargo bench -p wazn-kernels --bench kquants`.
//! Prints the fastest of many runs (the machine may be shared: the fastest run is the one
//! least disturbed), in microseconds, and the weight bytes read per second.

use std::hint::black_box;
use std::time::{Duration, Instant};

use wazn_kernels::{DType, Isa};

const N_ROWS: usize = 2048;
const N_COLS: usize = 2048;

fn lcg(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 24
}

fn unit(seed: &mut u64) -> f32 {
    (lcg(seed) >> 16) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
}

/// Byte offsets of the f16 scales of a K-quant super-block.
fn scale_offsets(dtype: DType) -> &'static [usize] {
    match dtype {
        DType::Q2_K => &[80, 82],
        DType::Q3_K => &[108],
        DType::Q4_K | DType::Q5_K => &[0, 2],
        DType::Q6_K => &[208],
        _ => &[],
    }
}

/// `[N_ROWS, N_COLS]` weights of `dtype`: quantized from random values where the type has
/// a quantizer, else random bytes with f16 scales of 2^-7 (any bytes are a valid K-quant).
fn weights(dtype: DType, seed: &mut u64) -> Vec<u8> {
    let row_bytes = dtype.row_bytes(N_COLS).expect("whole blocks");
    let mut bytes = vec![0u8; N_ROWS * row_bytes];
    if let Some(quantize) = dtype.scalar_traits().from_f32 {
        let values: Vec<f32> = (0..N_ROWS * N_COLS).map(|_| unit(seed)).collect();
        quantize(&values, &mut bytes);
        return bytes;
    }
    bytes.iter_mut().for_each(|b| *b = lcg(seed) as u8);
    for block in bytes.chunks_exact_mut(dtype.type_size()) {
        for &offset in scale_offsets(dtype) {
            block[offset..offset + 2].copy_from_slice(&0x2000u16.to_le_bytes());
        }
    }
    bytes
}

/// Fastest seconds per call of `f`, run for about `budget`.
fn fastest(budget: Duration, mut f: impl FnMut()) -> f64 {
    f();
    let mut best = f64::INFINITY;
    let start = Instant::now();
    let mut runs = 0;
    while start.elapsed() < budget || runs < 3 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        runs += 1;
    }
    best
}

fn main() {
    let budget = Duration::from_millis(400);
    let mut seed = 7u64;
    println!("{N_ROWS}x{N_COLS} matrix-vector product, one thread, fastest run");
    println!(
        "{:<6} {:<7} {:>12} {:>8} {:>15} {:>14}",
        "dtype", "kernels", "us/1 row", "GB/s", "us/4 rows (x4)", "us quantize x"
    );
    let types = [
        DType::Q4_1,
        DType::Q4_K,
        DType::Q6_K,
        DType::Q5_K,
        DType::Q3_K,
        DType::Q2_K,
        DType::Q5_0,
        DType::Q5_1,
    ];
    for dtype in types {
        let w = weights(dtype, &mut seed);
        let row_bytes = dtype.row_bytes(N_COLS).expect("whole blocks");
        let partner = dtype.scalar_traits().vec_dot_type;
        let values: Vec<Vec<f32>> = (0..4)
            .map(|_| (0..N_COLS).map(|_| unit(&mut seed)).collect())
            .collect();
        for isa in Isa::available() {
            let traits = dtype.traits_for(isa).expect("available level");
            let partner_traits = partner.traits_for(isa).expect("available level");
            let quantize = partner_traits.from_f32.expect("partner quantizer");
            let x_bytes = partner.row_bytes(N_COLS).expect("whole blocks");
            let xs: Vec<Vec<u8>> = values
                .iter()
                .map(|v| {
                    let mut x = vec![0u8; x_bytes];
                    quantize(v, &mut x);
                    x
                })
                .collect();
            let mut out = vec![0.0f32; 4 * N_ROWS];
            let one = fastest(budget, || {
                for (o, w_row) in out.iter_mut().zip(w.chunks_exact(row_bytes)) {
                    *o = (traits.vec_dot)(N_COLS, w_row, &xs[0]);
                }
                black_box(&out);
            });
            let four = fastest(budget, || {
                for (o, w_row) in out.chunks_exact_mut(4).zip(w.chunks_exact(row_bytes)) {
                    let x4 = [&xs[0][..], &xs[1][..], &xs[2][..], &xs[3][..]];
                    match traits.vec_dot_x4 {
                        Some(f) => o.copy_from_slice(&f(N_COLS, w_row, x4)),
                        None => {
                            for (r, x) in x4.into_iter().enumerate() {
                                o[r] = (traits.vec_dot)(N_COLS, w_row, x);
                            }
                        }
                    }
                }
                black_box(&out);
            });
            let mut x = vec![0u8; x_bytes];
            let quantize_s = fastest(Duration::from_millis(50), || {
                quantize(black_box(&values[0]), &mut x);
                black_box(&x);
            });
            println!(
                "{:<6} {:<7} {:>12.1} {:>8.2} {:>15.1} {:>14.2}",
                dtype.name(),
                isa.name(),
                one * 1e6,
                w.len() as f64 / one / 1e9,
                four * 1e6,
                quantize_s * 1e6
            );
        }
    }
}

//! MXFP4 (gpt-oss expert weights) against others' references, recorded in
//! tests/data/mxfp4_vectors.json by tests/gen_mxfp4_vectors.py:
//!
//! - dequantization bit for bit against gguf-py, on every scale byte and every code;
//! - quantization byte for byte against gguf-py (which agrees with ggml's
//!   quantize_row_mxfp4_ref on the same inputs; the generator checks that);
//! - the HF `_blocks` / `_scales` layout, converted and dequantized, against transformers'
//!   convert_moe_packed_tensors;
//! - vec_dot with Q8_0, on every instruction-set level this CPU runs, bit for bit against
//!   ggml's ggml_vec_dot_mxfp4_q8_0_generic (same integer sums, same f32 operations in the
//!   same order);
//! - the SIMD kernels bit for bit against the scalar reference on random rows;
//! - matmul over an MXFP4 weight matrix, both activation modes, against f64 sums of the
//!   dequantized weights.

mod dtype_support;

use dtype_support::{dequantize, hex_bytes, hex_f32s, quantize, U};
use serde::Deserialize;
use wazn_kernels::dtype::{mxfp4_blocks_from_hf, DType, DTypeError, MXFP4_HF_BLOCK_BYTES};
use wazn_kernels::{matmul, Activations, Isa, ThreadPool, WeightMatrix};

#[derive(Deserialize)]
struct Vectors {
    dequantize: DequantizeCase,
    quantize: Vec<QuantizeCase>,
    hf: Vec<HfCase>,
    vec_dot: Vec<DotCase>,
}

#[derive(Deserialize)]
struct DequantizeCase {
    n_elements: usize,
    bytes: String,
    dequant_f32: String,
}

#[derive(Deserialize)]
struct QuantizeCase {
    what: String,
    input_f32: String,
    bytes: String,
}

#[derive(Deserialize)]
struct HfCase {
    n_blocks: usize,
    blocks: String,
    scales: String,
    values_f32: String,
}

#[derive(Deserialize)]
struct DotCase {
    n_elements: usize,
    w: String,
    x: String,
    ggml_dot_f32: String,
}

fn load() -> Vectors {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/mxfp4_vectors.json");
    let text = std::fs::read_to_string(path).expect("read tests/data/mxfp4_vectors.json");
    serde_json::from_str(&text).expect("parse tests/data/mxfp4_vectors.json")
}

/// splitmix64: a small deterministic generator, enough for test data.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

#[test]
fn the_table_row_matches_ggml() {
    assert_eq!(DType::from_ggml_id(39), Some(DType::Mxfp4));
    assert_eq!(DType::Mxfp4.ggml_id(), 39);
    assert_eq!(DType::Mxfp4.name(), "MXFP4");
    assert_eq!(DType::Mxfp4.block_size(), 32);
    assert_eq!(DType::Mxfp4.type_size(), 17);
    assert_eq!(DType::Mxfp4.row_bytes(2880), Some(90 * 17));
    assert_eq!(DType::Mxfp4.vec_dot_type(), DType::Q8_0);
    assert_eq!(MXFP4_HF_BLOCK_BYTES, 16);
}

#[test]
fn dequantize_matches_gguf_bitwise() {
    let case = load().dequantize;
    let bytes = hex_bytes(&case.bytes);
    let want = hex_f32s(&case.dequant_f32);
    assert_eq!(want.len(), case.n_elements);
    let reference = dequantize(DType::Mxfp4, &bytes, case.n_elements);
    let mut scalar = vec![0.0f32; case.n_elements];
    (DType::Mxfp4.scalar_traits().to_f32)(&bytes, &mut scalar);
    for (what, got) in [("dequantize_row", &reference), ("scalar to_f32", &scalar)] {
        let diffs: Vec<(usize, u32, u32)> = got
            .iter()
            .zip(&want)
            .enumerate()
            .filter(|(_, (g, w))| g.to_bits() != w.to_bits())
            .map(|(i, (g, w))| (i, g.to_bits(), w.to_bits()))
            .collect();
        assert!(
            diffs.is_empty(),
            "{what}: {} of {} elements differ from gguf, first (index, wazn bits, gguf bits): {:?}",
            diffs.len(),
            want.len(),
            &diffs[..diffs.len().min(5)]
        );
    }
    // The fixture holds every scale byte and every code (and so +-inf from e >= 254).
    let blocks = bytes.chunks_exact(17);
    let mut scales_seen = [false; 256];
    let mut codes_seen = [[false; 16]; 2];
    for block in blocks {
        scales_seen[block[0] as usize] = true;
        for &byte in &block[1..] {
            codes_seen[0][(byte & 15) as usize] = true;
            codes_seen[1][(byte >> 4) as usize] = true;
        }
    }
    assert!(scales_seen.iter().all(|&s| s), "a scale byte is missing");
    assert!(codes_seen.iter().flatten().all(|&s| s), "a code is missing");
}

#[test]
fn quantize_matches_gguf_bytes() {
    for case in load().quantize {
        let input = hex_f32s(&case.input_f32);
        let want = hex_bytes(&case.bytes);
        let got = quantize(DType::Mxfp4, &input);
        assert_eq!(got.len(), want.len(), "{}: length", case.what);
        let first_diff = got.iter().zip(&want).position(|(g, w)| g != w);
        assert_eq!(
            first_diff,
            None,
            "{}: first differing byte (block {}), wazn {:?} vs gguf {:?}",
            case.what,
            first_diff.unwrap_or(0) / 17,
            &got[first_diff.unwrap_or(0) / 17 * 17..][..17],
            &want[first_diff.unwrap_or(0) / 17 * 17..][..17],
        );
    }
}

#[test]
fn hf_blocks_convert_to_the_values_transformers_reads() {
    for case in load().hf {
        let blocks = hex_bytes(&case.blocks);
        let scales = hex_bytes(&case.scales);
        let want = hex_f32s(&case.values_f32);
        let mut ggml = vec![0u8; case.n_blocks * 17];
        mxfp4_blocks_from_hf(&blocks, &scales, &mut ggml).expect("lengths agree");
        let got = dequantize(DType::Mxfp4, &ggml, case.n_blocks * 32);
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            // Equal as numbers: transformers reads code 8 as -0, ggml (and wazn) as +0.
            assert!(
                g == w,
                "{} blocks, element {i}: wazn {g} vs transformers {w}",
                case.n_blocks
            );
        }
    }
}

#[test]
fn hf_conversion_rejects_mismatched_lengths() {
    let blocks = [0x21u8; 32];
    let scales = [127u8; 2];
    let mut out = [0xAAu8; 35];
    for (n_codes, n_scales, n_out) in [
        (31, 2, 34),
        (32, 1, 34),
        (32, 2, 33),
        (32, 2, 35),
        (16, 2, 34),
    ] {
        let mut out_copy = out;
        assert_eq!(
            mxfp4_blocks_from_hf(
                &blocks[..n_codes],
                &scales[..n_scales],
                &mut out_copy[..n_out]
            ),
            Err(DTypeError::Mxfp4HfLengths {
                code_bytes: n_codes,
                scale_bytes: n_scales,
                out_bytes: n_out,
            })
        );
        assert_eq!(out_copy, out, "the output is left alone on error");
    }
    assert_eq!(mxfp4_blocks_from_hf(&[], &[], &mut []), Ok(()));
    assert_eq!(
        mxfp4_blocks_from_hf(&blocks, &scales, &mut out[..34]),
        Ok(())
    );
    // HF byte 0x21: even elements have code 1, odd ones code 2. ggml byte j holds elements
    // j and j + 16, of the same parity: 0x11 for even j, 0x22 for odd j.
    for block in out[..34].chunks_exact(17) {
        assert_eq!(block[0], 127);
        for (j, &byte) in block[1..].iter().enumerate() {
            let code = if j % 2 == 0 { 1 } else { 2 };
            assert_eq!(byte, code | (code << 4), "byte {j}");
        }
    }
    let message = DTypeError::Mxfp4HfLengths {
        code_bytes: 31,
        scale_bytes: 2,
        out_bytes: 34,
    }
    .to_string();
    assert!(
        !message.contains('\n') && message.contains("31 code bytes"),
        "{message}"
    );
}

#[test]
fn vec_dot_matches_ggml_bit_for_bit() {
    let cases = load().vec_dot;
    assert!(cases.len() >= 4);
    for isa in Isa::available() {
        let traits = DType::Mxfp4.traits_for(isa).expect("available");
        for case in &cases {
            let (w, x) = (hex_bytes(&case.w), hex_bytes(&case.x));
            let want = hex_f32s(&case.ggml_dot_f32)[0];
            let n = case.n_elements;
            let got = (traits.vec_dot)(n, &w, &x);
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{isa:?} n={n}: {got} vs ggml {want}"
            );
            if let Some(x4) = traits.vec_dot_x4 {
                for (r, got) in x4(n, &w, [&x, &x, &x, &x]).into_iter().enumerate() {
                    assert_eq!(got.to_bits(), want.to_bits(), "{isa:?} x4 row {r} n={n}");
                }
            }
        }
    }
}

/// A random MXFP4 row: random codes, scale bytes mostly in 100..150 (finite sums) and now
/// and then anywhere in 0..=255 (subnormal scales, infinities and NaNs).
fn random_mxfp4_row(rng: &mut Rng, n_blocks: usize) -> Vec<u8> {
    let mut row: Vec<u8> = (0..n_blocks * 17).map(|_| rng.next_u64() as u8).collect();
    for block in row.chunks_exact_mut(17) {
        if rng.below(8) != 0 {
            block[0] = 100 + rng.below(50) as u8;
        }
    }
    row
}

/// A random Q8_0 row: random codes (-128 included) and finite f16 scales of either sign.
fn random_q8_0_row(rng: &mut Rng, n_blocks: usize) -> Vec<u8> {
    let mut row: Vec<u8> = (0..n_blocks * 34).map(|_| rng.next_u64() as u8).collect();
    for block in row.chunks_exact_mut(34) {
        let d = half::f16::from_f64(rng.unit() * 10f64.powi(rng.below(8) as i32 - 5));
        block[..2].copy_from_slice(&d.to_le_bytes());
    }
    row
}

#[test]
fn simd_vec_dot_matches_the_scalar_reference() {
    let mut rng = Rng(0x3F4A_11CE);
    let reference = DType::Mxfp4.scalar_traits().vec_dot;
    let same = |a: f32, b: f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
    let mut checked = 0;
    for isa in Isa::available().into_iter().filter(|&i| i != Isa::Scalar) {
        let fast = DType::Mxfp4.traits_for(isa).expect("available");
        for trial in 0..400 {
            let n_blocks = 1 + rng.below(70);
            let n = n_blocks * 32;
            let w = random_mxfp4_row(&mut rng, n_blocks);
            let xs: Vec<Vec<u8>> = (0..4)
                .map(|_| random_q8_0_row(&mut rng, n_blocks))
                .collect();
            // Unaligned copies: the kernels load without alignment.
            let offset = 1 + trial % 7;
            let mut w_buf = vec![0u8; offset];
            w_buf.extend_from_slice(&w);
            let w_in = &w_buf[offset..];
            let want: Vec<f32> = xs.iter().map(|x| reference(n, &w, x)).collect();
            let got = (fast.vec_dot)(n, w_in, &xs[0]);
            assert!(
                same(got, want[0]),
                "{isa:?} n={n}: {got} vs scalar {}",
                want[0]
            );
            // Fewer elements than the rows hold: the kernels stop at n.
            let short = (fast.vec_dot)(n - 32, w_in, &xs[0]);
            assert!(
                same(short, reference(n - 32, &w, &xs[0])),
                "{isa:?} n={}",
                n - 32
            );
            if let Some(x4) = fast.vec_dot_x4 {
                let got = x4(n, w_in, [&xs[0], &xs[1], &xs[2], &xs[3]]);
                for r in 0..4 {
                    assert!(same(got[r], want[r]), "{isa:?} x4 row {r} n={n}");
                }
            }
            checked += 1;
        }
    }
    println!("{checked} random rows checked against the scalar reference");
}

/// |x - dequant(quantize_q8_0(x))| for a block with largest magnitude `amax`: half a step
/// of d = amax/127, plus the f16 rounding of d over 127 steps, plus an f16 subnormal step.
fn q8_0_error_bound(amax: f64) -> f64 {
    (amax / 127.0) * (0.5 + 127.0 * 2f64.powi(-11)) * (1.0 + 1e-5) + 127.0 * 2f64.powi(-25)
}

#[test]
fn matmul_matches_f64_sums_of_the_dequantized_weights() {
    let pool = ThreadPool::new(3).expect("thread pool");
    let mut rng = Rng(0xE8E0_0039);
    // 45 blocks per row: groups of four and a remainder; 5 activation rows: four-row
    // kernels and one row left over.
    let (n_rows, n_cols, n_x) = (37, 45 * 32, 5);
    let w_f32: Vec<f32> = (0..n_rows * n_cols)
        .map(|i| (rng.unit() * 10f64.powi((i / 32 % 5) as i32 - 2)) as f32)
        .collect();
    let w_bytes = quantize(DType::Mxfp4, &w_f32);
    let w = WeightMatrix::new(DType::Mxfp4, &w_bytes, n_rows, n_cols).expect("shape");
    let w_deq = dequantize(DType::Mxfp4, &w_bytes, n_rows * n_cols);
    let x: Vec<f32> = (0..n_x * n_cols).map(|_| rng.unit() as f32).collect();

    let mut out_f32 = vec![0.0f32; n_x * n_rows];
    matmul(
        &pool,
        &w,
        &x,
        n_x,
        &mut out_f32,
        &mut Vec::new(),
        Activations::F32,
    );
    let mut out_q = vec![0.0f32; n_x * n_rows];
    let mut scratch = Vec::new();
    matmul(
        &pool,
        &w,
        &x,
        n_x,
        &mut out_q,
        &mut scratch,
        Activations::Quantized,
    );
    let x_q8 = dequantize(DType::Q8_0, &scratch, n_x * n_cols);

    let mut worst = [0.0f64; 3];
    for r in 0..n_x {
        let x_row = &x[r * n_cols..(r + 1) * n_cols];
        let xq_row = &x_q8[r * n_cols..(r + 1) * n_cols];
        for o in 0..n_rows {
            let w_row = &w_deq[o * n_cols..(o + 1) * n_cols];
            let exact: f64 = w_row
                .iter()
                .zip(x_row)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum();
            let s: f64 = w_row
                .iter()
                .zip(x_row)
                .map(|(&a, &b)| (a as f64 * b as f64).abs())
                .sum();

            // F32 activations: one f32 product and one f32 sum per element.
            let tol = (n_cols + 2) as f64 * U * s;
            let err = (out_f32[r * n_rows + o] as f64 - exact).abs();
            assert!(err <= tol, "F32 ({r},{o}): error {err:e} > {tol:e}");
            worst[0] = worst[0].max(err / tol);

            // Quantized activations: the f32 rounding of the block sums against the
            // dequantized Q8_0 row, ...
            let got = out_q[r * n_rows + o] as f64;
            let exact_q: f64 = w_row
                .iter()
                .zip(xq_row)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum();
            let s_q: f64 = w_row
                .iter()
                .zip(xq_row)
                .map(|(&a, &b)| (a as f64 * b as f64).abs())
                .sum();
            let tol_q = (n_cols / 32 + 8) as f64 * U * s_q;
            let err_q = (got - exact_q).abs();
            assert!(
                err_q <= tol_q,
                "Quantized ({r},{o}) vs Q8_0 row: {err_q:e} > {tol_q:e}"
            );
            worst[1] = worst[1].max(err_q / tol_q);
            // ... and the activation quantization error against the f32 activations.
            let quantization: f64 = x_row
                .chunks(32)
                .zip(w_row.chunks(32))
                .map(|(xb, wb)| {
                    let amax = xb.iter().fold(0.0f64, |a, &v| a.max((v as f64).abs()));
                    q8_0_error_bound(amax) * wb.iter().map(|&v| (v as f64).abs()).sum::<f64>()
                })
                .sum();
            let err_exact = (got - exact).abs();
            assert!(
                err_exact <= tol_q + quantization,
                "Quantized ({r},{o}) vs f32 activations: {err_exact:e} > {:e}",
                tol_q + quantization
            );
            worst[2] = worst[2].max(err_exact / (tol_q + quantization));
        }
    }
    println!(
        "|err| / tol: F32 activations {:.3}, Q8_0 activations {:.3} (vs their Q8_0 values), \
         {:.3} (vs f32)",
        worst[0], worst[1], worst[2]
    );
}

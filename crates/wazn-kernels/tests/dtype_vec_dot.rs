//! Every type's vec_dot against its own dequantization (already held bit-exact to gguf by
//! dtype_vectors.rs):
//!
//! 1. vec_dot(w, quantize(x, partner)) equals sum_i dequant(w)[i] * dequant(xq)[i] (summed in
//!    f64) up to f32 rounding noise: at most (blocks + 8) * 2^-24 * S, where S is the sum of
//!    |w-part * x| over all products the kernel forms (scale parts and min parts of w taken
//!    separately, since a kernel that sums them separately rounds each). For Q8_1 partners
//!    the kernel uses the block's stored s = fp16(d*sum(q)) (from the unrounded d) where the
//!    dequantized path has fp16(d)*sum(q); that documented difference is bounded as well.
//! 2. It is within the activation quantization error of the exact f32 dot
//!    sum_i dequant(w)[i] * x[i]: |x - dequant(xq)| <= (amax/127)(1/2 + 127*2^-11) per Q8_0 /
//!    Q8_1 block (rounding plus the f16 scale) and (amax/127)(1/2) per Q8_K block.

mod dtype_support;

use dtype_support::{dequantize, min_field_offset, product_magnitude, quantize, U};
use wazn_kernels::dtype::{vec_dot_row, DType};

/// Elements per row: a whole number of blocks of every type.
const N: usize = 2048;

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

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Byte offsets of the f16 scale fields of each block (ggml-common.h); random blocks get
/// finite values there.
fn f16_scale_offsets(dtype: DType) -> &'static [usize] {
    match dtype {
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => &[0],
        DType::Q4_1 | DType::Q5_1 | DType::Q8_1 | DType::Q4_K | DType::Q5_K => &[0, 2],
        DType::Q2_K => &[80, 82],
        DType::Q3_K => &[108],
        DType::Q6_K => &[208],
        DType::F32 | DType::F16 | DType::BF16 | DType::Q8_K | DType::Mxfp4 => &[],
    }
}

/// A row of f32 of magnitude ~`scale`, with a few outliers 20x larger.
fn random_f32_row(rng: &mut Rng, scale: f64) -> Vec<f32> {
    (0..N)
        .map(|_| {
            let outlier = if rng.uniform() < 0.01 { 20.0 } else { 1.0 };
            (rng.normal() * scale * outlier) as f32
        })
        .collect()
}

/// Random bytes with every f16 scale field set to +-10^u, u uniform in [-3, 0].
fn random_weight_bytes(rng: &mut Rng, dtype: DType) -> Vec<u8> {
    let mut bytes = rng.bytes(dtype.row_bytes(N).expect("whole blocks"));
    for block in bytes.chunks_exact_mut(dtype.type_size()) {
        for &offset in f16_scale_offsets(dtype) {
            let sign = if rng.uniform() < 0.5 { -1.0 } else { 1.0 };
            let value = half::f16::from_f64(sign * 10f64.powf(-3.0 * rng.uniform()));
            block[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
        }
    }
    bytes
}

/// Test weight rows of `dtype`: quantized from random f32 where wazn can quantize to it,
/// random bytes with finite scales where it has f16 scale fields.
fn weight_rows(rng: &mut Rng, dtype: DType) -> Vec<Vec<u8>> {
    let mut rows = Vec::new();
    if dtype.traits().from_f32.is_some() {
        for exponent in -3..=2 {
            rows.push(quantize(dtype, &random_f32_row(rng, 10f64.powi(exponent))));
        }
    }
    if !f16_scale_offsets(dtype).is_empty() {
        for _ in 0..6 {
            rows.push(random_weight_bytes(rng, dtype));
        }
    }
    rows
}

/// Bound on the kernel's use of Q8_1's stored s instead of fp16(d)*sum(q): per block,
/// |m| * (|s - fp16(d)*sum(q)|) <= |m| * (2^-10 |d*sum(q)| + f16 subnormal steps).
fn q8_1_sum_term_bound(dtype: DType, w: &[u8], xq: &[u8]) -> f64 {
    let Some(m_offset) = min_field_offset(dtype) else {
        return 0.0;
    };
    let f16_at = |b: &[u8], at: usize| half::f16::from_le_bytes([b[at], b[at + 1]]).to_f64();
    w.chunks_exact(dtype.type_size())
        .zip(xq.chunks_exact(DType::Q8_1.type_size()))
        .map(|(wb, xb)| {
            let m = f16_at(wb, m_offset).abs();
            let s = f16_at(xb, 2).abs();
            m * (2f64.powi(-10) * 1.001 * s + 4065.0 * 2f64.powi(-25))
        })
        .sum()
}

/// A priori bound on |x - dequant(quantize(x))| for each partner block.
fn activation_error_bound(partner: DType, x_block: &[f32]) -> f64 {
    let amax = x_block.iter().fold(0.0f64, |a, &v| a.max((v as f64).abs()));
    match partner {
        DType::F32 => 0.0,
        DType::Q8_0 | DType::Q8_1 => {
            (amax / 127.0) * (0.5 + 127.0 * 2f64.powi(-11)) * (1.0 + 1e-5) + 127.0 * 2f64.powi(-25)
        }
        DType::Q8_K => (amax / 127.0) * 0.5 * (1.0 + 1e-5),
        other => panic!("{other} is not an activation type"),
    }
}

#[derive(Default)]
struct Worst {
    /// Largest |vec_dot - dequantized dot| / tolerance of check 1.
    vs_dequant: f64,
    /// The same error in units of U * S (not kept for Q8_1 partners, whose error is mostly
    /// the rounding of s).
    vs_dequant_in_u: f64,
    /// Largest |vec_dot - exact f32 dot| / tolerance of check 2.
    vs_exact: f64,
}

#[test]
fn vec_dot_matches_dequantized_dot() {
    let mut rng = Rng(0x5EED_D07D);
    let mut report = Vec::new();
    for dtype in DType::ALL {
        let partner = dtype.vec_dot_type();
        let rows = weight_rows(&mut rng, dtype);
        assert!(rows.len() >= 6, "{dtype}: no test rows");
        let mut worst = Worst::default();
        for (r, w) in rows.iter().enumerate() {
            let w_deq = dequantize(dtype, w, N);
            let x = random_f32_row(&mut rng, 10f64.powi(r as i32 % 4 - 2));
            let xq = quantize(partner, &x);
            let x_deq = dequantize(partner, &xq, N);

            let got = vec_dot_row(dtype, N, w, &xq).expect("vec_dot") as f64;

            let dequantized_dot: f64 = w_deq
                .iter()
                .zip(&x_deq)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum();
            let s = product_magnitude(dtype, w, &x_deq);
            let blocks = N / dtype.block_size();
            let sum_term = if partner == DType::Q8_1 {
                q8_1_sum_term_bound(dtype, w, &xq)
            } else {
                0.0
            };
            let tol_dequant = (blocks + 8) as f64 * U * s + sum_term;
            let err = (got - dequantized_dot).abs();
            assert!(
                err <= tol_dequant,
                "{dtype} row {r}: vec_dot {got} vs dequantized dot {dequantized_dot}: error {err:e} > {tol_dequant:e}"
            );
            worst.vs_dequant = worst.vs_dequant.max(err / tol_dequant);
            if sum_term == 0.0 {
                worst.vs_dequant_in_u = worst.vs_dequant_in_u.max(err / (U * s));
            }

            let exact_dot: f64 = w_deq
                .iter()
                .zip(&x)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum();
            let partner_block = partner.block_size();
            let quantization_bound: f64 = x
                .chunks(partner_block)
                .zip(w_deq.chunks(partner_block))
                .map(|(xb, wb)| {
                    activation_error_bound(partner, xb)
                        * wb.iter().map(|&v| (v as f64).abs()).sum::<f64>()
                })
                .sum();
            let tol_exact = tol_dequant + quantization_bound;
            let err_exact = (got - exact_dot).abs();
            assert!(
                err_exact <= tol_exact,
                "{dtype} row {r}: vec_dot {got} vs exact f32 dot {exact_dot}: error {err_exact:e} > {tol_exact:e}"
            );
            worst.vs_exact = worst.vs_exact.max(err_exact / tol_exact);
        }
        let in_u = if partner == DType::Q8_1 && min_field_offset(dtype).is_some() {
            "  (s rounding)".to_string()
        } else {
            format!("(= {:.2} u*S)", worst.vs_dequant_in_u)
        };
        report.push(format!(
            "{:5} x {:4} ({:2} rows): |err| / tol {:.3} {in_u}, vs exact f32 dot: |err| / tol {:.3}",
            dtype.name(),
            partner.name(),
            rows.len(),
            worst.vs_dequant,
            worst.vs_exact,
        ));
    }
    println!("{}", report.join("\n"));
}

/// vec_dot is linear in the activations' codes: scaling every Q8 code block by -1 (the
/// codes, the code sums and s) negates the result exactly.
#[test]
fn vec_dot_negates_with_negated_activations() {
    let mut rng = Rng(0xA11CE);
    for dtype in DType::ALL {
        let partner = dtype.vec_dot_type();
        for w in weight_rows(&mut rng, dtype) {
            let x = random_f32_row(&mut rng, 1.0);
            let neg_x: Vec<f32> = x.iter().map(|v| -v).collect();
            let xq = quantize(partner, &x);
            let neg_xq = quantize(partner, &neg_x);
            let a = vec_dot_row(dtype, N, &w, &xq).expect("vec_dot");
            let b = vec_dot_row(dtype, N, &w, &neg_xq).expect("vec_dot");
            // Q8_K picks its scale's sign from the largest element, so -x gives the same codes
            // with -d; the other quantizers negate the codes. Either way the result negates.
            assert_eq!(a, -b, "{dtype}: vec_dot(w, -x) != -vec_dot(w, x)");
        }
    }
}

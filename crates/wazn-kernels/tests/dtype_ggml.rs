//! wazn's activation quantizers, K-quant weight quantizers and dot products against ggml's
//! own C reference kernels (quantize_row_*_ref and ggml_vec_dot_*_generic), recorded in
//! tests/data/dtype_ggml_vectors.json by tests/gen_dtype_ggml_vectors.py.
//!
//! Quantizers must agree byte for byte. Dot products sum the same integers but round in a
//! different order (ggml's K-quant kernels keep 8 f32 lane sums, its Q4_0 kernel multiplies
//! (sumi*dw)*dx), so each side is within (blocks + 8) * 2^-24 * S of the exact value, and the
//! two within twice that (S: see dtype_support::product_magnitude).

mod dtype_support;

use std::collections::BTreeMap;

use dtype_support::{dequantize, dtype_named, hex_bytes, hex_f32s, product_magnitude, quantize, U};
use serde::Deserialize;
use wazn_kernels::dtype::{vec_dot_row, DType};

#[derive(Deserialize)]
struct Vectors {
    ggml_commit: String,
    quantize: Vec<QuantizeCase>,
    weight_quantize: Vec<WeightQuantizeCase>,
    vec_dot: Vec<DotCase>,
}

#[derive(Deserialize)]
struct QuantizeCase {
    dtype: String,
    input_f32: String,
    bytes: String,
}

/// One input row and its bytes in each K-quant weight type.
#[derive(Deserialize)]
struct WeightQuantizeCase {
    input: String,
    input_f32: String,
    bytes: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct DotCase {
    dtype: String,
    partner: String,
    n_elements: usize,
    w: String,
    x: String,
    ggml_dot_f32: String,
}

fn load() -> Vectors {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/dtype_ggml_vectors.json"
    );
    let text = std::fs::read_to_string(path).expect("read tests/data/dtype_ggml_vectors.json");
    serde_json::from_str(&text).expect("parse tests/data/dtype_ggml_vectors.json")
}

/// Asserts that wazn quantizes `x` to `dtype` as ggml did (`want_hex`), naming the first
/// block that differs.
fn assert_ggml_bytes(dtype: DType, x: &[f32], want_hex: &str, case: &str, ggml_commit: &str) {
    let got = quantize(dtype, x);
    let want = hex_bytes(want_hex);
    assert_eq!(got.len(), want.len(), "{dtype} {case}: length");
    let first_diff = got.iter().zip(&want).position(|(g, w)| g != w);
    assert_eq!(
        first_diff,
        None,
        "{dtype} {case}: differs from ggml {ggml_commit} in block {:?}",
        first_diff.map(|i| i / dtype.type_size())
    );
}

#[test]
fn activation_quantizers_match_ggml_bytes() {
    let vectors = load();
    let mut checked = Vec::new();
    for (c, case) in vectors.quantize.iter().enumerate() {
        let dtype = dtype_named(&case.dtype);
        let x = hex_f32s(&case.input_f32);
        let label = format!("case {c}");
        assert_ggml_bytes(dtype, &x, &case.bytes, &label, &vectors.ggml_commit);
        checked.push(case.dtype.clone());
    }
    for name in ["Q8_0", "Q8_1", "Q8_K"] {
        assert!(
            checked.iter().any(|c| c == name),
            "{name}: no ggml quantize vectors"
        );
    }
}

#[test]
fn weight_quantizers_match_ggml_bytes() {
    let vectors = load();
    let mut checked = BTreeMap::<String, usize>::new();
    for case in &vectors.weight_quantize {
        let x = hex_f32s(&case.input_f32);
        for (name, want_hex) in &case.bytes {
            let dtype = dtype_named(name);
            let label = format!("row \"{}\"", case.input);
            assert_ggml_bytes(dtype, &x, want_hex, &label, &vectors.ggml_commit);
            *checked.entry(name.clone()).or_default() += 1;
        }
    }
    for name in ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"] {
        assert!(
            checked.get(name).is_some_and(|&rows| rows >= 10),
            "{name}: too few ggml weight quantize vectors ({checked:?})"
        );
    }
}

#[test]
fn vec_dot_matches_ggml_generic() {
    let vectors = load();
    let mut report = Vec::new();
    for (c, case) in vectors.vec_dot.iter().enumerate() {
        let dtype = dtype_named(&case.dtype);
        let partner = dtype_named(&case.partner);
        assert_eq!(dtype.vec_dot_type(), partner, "{dtype}: ggml's partner");
        let n = case.n_elements;
        let (w, x) = (hex_bytes(&case.w), hex_bytes(&case.x));
        let ggml = hex_f32s(&case.ggml_dot_f32)[0] as f64;
        let got = vec_dot_row(dtype, n, &w, &x).expect("vec_dot") as f64;

        let x_deq = dequantize(partner, &x, n);
        let s = product_magnitude(dtype, &w, &x_deq);
        let blocks = n / dtype.block_size();
        let tol = 2.0 * (blocks + 8) as f64 * U * s;
        let err = (got - ggml).abs();
        assert!(
            err <= tol,
            "{dtype} case {c}: wazn {got} vs ggml {ggml}: |diff| {err:e} > {tol:e}"
        );
        report.push(format!(
            "{dtype:5} case {c:2}: wazn {got:>14.6e}  ggml {ggml:>14.6e}  |diff| = {:.3} u*S{}",
            err / (U * s),
            if err == 0.0 { " (identical)" } else { "" }
        ));
    }
    println!("{}", report.join("\n"));
}

//! wazn's dtype table against the `gguf` Python package (llama.cpp's gguf-py).
//!
//! tests/data/dtype_vectors.json is written by tests/gen_dtype_vectors.py. gguf dequantizes
//! in f32 with the same operations in the same order as ggml (e.g. Q4_1: d*q + m; K-quants:
//! (d*scale)*q - dmin*min), so wazn must agree bit for bit, and so must the quantizers.

mod dtype_support;

use dtype_support::{dtype_named, hex_bytes, hex_f32s};
use serde::Deserialize;
use wazn_kernels::dtype::{dequantize_row, quantize_row, DType};

#[derive(Deserialize)]
struct Vectors {
    types: Vec<TypeRow>,
    cases: Vec<Case>,
}

/// gguf's `GGMLQuantizationType` id and `GGML_QUANT_SIZES` entry for one type.
#[derive(Deserialize)]
struct TypeRow {
    name: String,
    ggml_id: u32,
    block_size: usize,
    type_size: usize,
}

#[derive(Deserialize)]
struct Case {
    dtype: String,
    /// "gguf.quants.quantize" (bytes made from `input_f32`) or "random_bytes".
    source: String,
    n_elements: usize,
    bytes: String,
    dequant_f32: String,
    input_f32: Option<String>,
}

fn load() -> Vectors {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/dtype_vectors.json");
    let text = std::fs::read_to_string(path).expect("read tests/data/dtype_vectors.json");
    serde_json::from_str(&text).expect("parse tests/data/dtype_vectors.json")
}

/// Indices and bit patterns of the elements where `got` and `want` differ bitwise.
fn bit_differences(got: &[f32], want: &[f32]) -> Vec<(usize, u32, u32)> {
    got.iter()
        .zip(want)
        .enumerate()
        .filter(|(_, (g, w))| g.to_bits() != w.to_bits())
        .map(|(i, (g, w))| (i, g.to_bits(), w.to_bits()))
        .collect()
}

#[test]
fn type_ids_and_sizes_match_gguf() {
    let vectors = load();
    assert_eq!(vectors.types.len(), DType::ALL.len());
    for row in &vectors.types {
        let dtype = dtype_named(&row.name);
        assert_eq!(dtype.ggml_id(), row.ggml_id, "{}: ggml id", row.name);
        assert_eq!(DType::from_ggml_id(row.ggml_id), Some(dtype));
        assert_eq!(
            dtype.block_size(),
            row.block_size,
            "{}: block size",
            row.name
        );
        if dtype == DType::Q8_1 {
            // gguf-py still lists the old Q8_1 layout with f32 d and s (40 bytes); ggml's
            // block_q8_1 now holds two f16 (static_assert: 2*sizeof(ggml_half) + 32 = 36).
            // Q8_1 never appears in files, only in ggml's (and wazn's) dot products.
            assert_eq!((row.type_size, dtype.type_size()), (40, 36));
        } else {
            assert_eq!(dtype.type_size(), row.type_size, "{}: type size", row.name);
        }
    }
}

#[test]
fn dequantize_matches_gguf_bitwise() {
    let vectors = load();
    let mut covered = Vec::new();
    for case in &vectors.cases {
        let dtype = dtype_named(&case.dtype);
        let bytes = hex_bytes(&case.bytes);
        let want = hex_f32s(&case.dequant_f32);
        assert_eq!(want.len(), case.n_elements);
        let mut got = vec![0.0f32; case.n_elements];
        dequantize_row(dtype, &bytes, &mut got)
            .unwrap_or_else(|e| panic!("{} ({}): {e}", case.dtype, case.source));
        let diffs = bit_differences(&got, &want);
        assert!(
            diffs.is_empty(),
            "{} ({}): {} of {} elements differ from gguf, first (index, wazn bits, gguf bits): {:?}",
            case.dtype,
            case.source,
            diffs.len(),
            case.n_elements,
            &diffs[..diffs.len().min(5)]
        );
        covered.push(dtype);
    }
    // Every type gguf can dequantize is covered (Q8_1 and Q8_K it cannot).
    for dtype in DType::ALL {
        if dtype != DType::Q8_1 && dtype != DType::Q8_K {
            assert!(covered.contains(&dtype), "{dtype}: no dequantize vectors");
        }
    }
}

#[test]
fn quantize_matches_gguf_bytes() {
    let vectors = load();
    let mut covered = Vec::new();
    for case in vectors
        .cases
        .iter()
        .filter(|c| c.source == "gguf.quants.quantize")
    {
        let dtype = dtype_named(&case.dtype);
        let input = hex_f32s(
            case.input_f32
                .as_deref()
                .expect("quantize case has its input"),
        );
        let want = hex_bytes(&case.bytes);
        let mut got = vec![0u8; want.len()];
        quantize_row(dtype, &input, &mut got).unwrap_or_else(|e| panic!("{}: {e}", case.dtype));
        let first_diff = got.iter().zip(&want).position(|(g, w)| g != w);
        assert_eq!(
            first_diff, None,
            "{}: quantized bytes differ from gguf's (block bytes from the first difference: wazn {:02x?}, gguf {:02x?})",
            case.dtype,
            &got[first_diff.unwrap_or(0)..(first_diff.unwrap_or(0) + 8).min(got.len())],
            &want[first_diff.unwrap_or(0)..(first_diff.unwrap_or(0) + 8).min(want.len())],
        );
        covered.push(dtype);
    }
    for dtype in [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q8_0,
    ] {
        assert!(covered.contains(&dtype), "{dtype}: no quantize vectors");
    }
}

/// gguf has no Q8_1 quantizer, but ggml's Q8_1 reference (quantize_row_q8_1_ref) computes d
/// and the codes exactly as its Q8_0 reference does, and adds s = fp16(sum(q) * d) with the
/// f32 d = amax/127 from before its rounding to f16. So wazn's Q8_1 block must carry gguf's
/// Q8_0 d and codes, and exactly that s. (dtype_ggml.rs also holds Q8_1 to ggml's own C.)
#[test]
fn q8_1_quantize_matches_gguf_q8_0_codes() {
    let vectors = load();
    let case = vectors
        .cases
        .iter()
        .find(|c| c.dtype == "Q8_0" && c.source == "gguf.quants.quantize")
        .expect("a gguf-quantized Q8_0 case");
    let input = hex_f32s(
        case.input_f32
            .as_deref()
            .expect("quantize case has its input"),
    );
    let q8_0 = hex_bytes(&case.bytes);
    let mut q8_1 = vec![0u8; DType::Q8_1.row_bytes(input.len()).expect("whole blocks")];
    quantize_row(DType::Q8_1, &input, &mut q8_1).expect("quantize Q8_1");
    let blocks = q8_1
        .chunks_exact(36)
        .zip(q8_0.chunks_exact(34))
        .zip(input.chunks_exact(32));
    for (b, ((block_1, block_0), x)) in blocks.enumerate() {
        assert_eq!(block_1[0..2], block_0[0..2], "block {b}: d");
        assert_eq!(block_1[4..36], block_0[2..34], "block {b}: codes");
        let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let code_sum: i32 = block_1[4..36].iter().map(|&c| c as i8 as i32).sum();
        let want_s = half::f16::from_f32(code_sum as f32 * (amax / 127.0));
        assert_eq!(block_1[2..4], want_s.to_le_bytes(), "block {b}: s");
    }
}

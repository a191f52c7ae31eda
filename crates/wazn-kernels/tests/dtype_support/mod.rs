//! Helpers shared by the dtype tests: reading the hex fixtures, checked row conversions, and
//! the magnitude bound behind the dot-product tolerances.

#![allow(dead_code)] // each test file uses a different subset

use wazn_kernels::dtype::{dequantize_row, quantize_row, DType};

/// f32 unit roundoff.
pub const U: f64 = 1.0 / (1u64 << 24) as f64;

pub fn hex_bytes(hex: &str) -> Vec<u8> {
    assert!(hex.len().is_multiple_of(2), "odd-length hex string");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit"))
        .collect()
}

pub fn hex_f32s(hex: &str) -> Vec<f32> {
    hex_bytes(hex)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

pub fn dtype_named(name: &str) -> DType {
    DType::ALL
        .into_iter()
        .find(|dtype| dtype.name() == name)
        .unwrap_or_else(|| panic!("no wazn dtype named {name}"))
}

pub fn dequantize(dtype: DType, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; n];
    dequantize_row(dtype, bytes, &mut out).expect("dequantize");
    out
}

pub fn quantize(dtype: DType, x: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; dtype.row_bytes(x.len()).expect("whole blocks")];
    quantize_row(dtype, x, &mut out).expect("quantize");
    out
}

/// Byte offset of the f16 min / offset field, for the types whose elements are
/// d*scale*q - dmin*min (or d*q + m) (ggml-common.h).
pub fn min_field_offset(dtype: DType) -> Option<usize> {
    match dtype {
        DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K => Some(2),
        DType::Q2_K => Some(82),
        _ => None,
    }
}

/// For each element, |scale part| + |min part| of the dequantized weight (just |w| for types
/// without mins): the min part is what zeroing the min field takes away.
pub fn weight_part_magnitudes(dtype: DType, w: &[u8], w_deq: &[f32]) -> Vec<f64> {
    let Some(offset) = min_field_offset(dtype) else {
        return w_deq.iter().map(|&v| (v as f64).abs()).collect();
    };
    let mut no_min = w.to_vec();
    for block in no_min.chunks_exact_mut(dtype.type_size()) {
        block[offset..offset + 2].copy_from_slice(&[0, 0]);
    }
    let scale_part = dequantize(dtype, &no_min, w_deq.len());
    scale_part
        .iter()
        .zip(w_deq)
        .map(|(&s, &w)| (s as f64).abs() + (s as f64 - w as f64).abs())
        .collect()
}

/// S = sum_i (|scale part of w_i| + |min part of w_i|) * |x_i|: f32 rounding in a dot product
/// that forms these products is at most (number of sequential roundings) * U * S.
pub fn product_magnitude(dtype: DType, w: &[u8], x_deq: &[f32]) -> f64 {
    let w_deq = dequantize(dtype, w, x_deq.len());
    weight_part_magnitudes(dtype, w, &w_deq)
        .iter()
        .zip(x_deq)
        .map(|(&a, &b)| a * (b as f64).abs())
        .sum()
}

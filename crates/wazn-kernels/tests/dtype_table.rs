//! The dtype table's shape, and the checked entry points' length errors.

use wazn_kernels::dtype::{dequantize_row, quantize_row, vec_dot_row, DType, DTypeError};

#[test]
fn table_rows_are_in_declaration_order() {
    for dtype in DType::ALL {
        assert_eq!(dtype.traits().dtype, dtype);
    }
}

#[test]
fn unsupported_ggml_ids_are_none() {
    // Removed ids (4, 5), IQ types, integer types, and what follows MXFP4 (39).
    for id in [4, 5, 16, 20, 24, 28, 29, 31, 34, 40, 41, u32::MAX] {
        assert_eq!(DType::from_ggml_id(id), None, "id {id}");
    }
}

/// Dot partners as ggml pairs them (ggml-cpu's type_traits_cpu), except that the float
/// weight types take exact f32 activations, and Q8_1 / Q8_K (no ggml vec_dot) pair with
/// themselves.
#[test]
fn dot_partners() {
    let expected = [
        (DType::F32, DType::F32),
        (DType::F16, DType::F32),
        (DType::BF16, DType::F32),
        (DType::Q4_0, DType::Q8_0),
        (DType::Q4_1, DType::Q8_1),
        (DType::Q5_0, DType::Q8_0),
        (DType::Q5_1, DType::Q8_1),
        (DType::Q8_0, DType::Q8_0),
        (DType::Q8_1, DType::Q8_1),
        (DType::Q2_K, DType::Q8_K),
        (DType::Q3_K, DType::Q8_K),
        (DType::Q4_K, DType::Q8_K),
        (DType::Q5_K, DType::Q8_K),
        (DType::Q6_K, DType::Q8_K),
        (DType::Q8_K, DType::Q8_K),
    ];
    for (weight, partner) in expected {
        assert_eq!(weight.vec_dot_type(), partner, "{weight}");
        // Every partner can be produced from f32 activations.
        assert!(
            partner.traits().from_f32.is_some(),
            "{partner} has no quantizer"
        );
    }
}

#[test]
fn row_bytes_counts_whole_blocks_only() {
    assert_eq!(DType::Q4_1.row_bytes(576), Some(18 * 20));
    assert_eq!(DType::Q6_K.row_bytes(512), Some(2 * 210));
    assert_eq!(DType::BF16.row_bytes(3), Some(6));
    assert_eq!(DType::Q4_0.row_bytes(0), Some(0));
    assert_eq!(DType::Q4_0.row_bytes(33), None);
    assert_eq!(DType::Q2_K.row_bytes(128), None);
    assert_eq!(DType::F32.row_bytes(usize::MAX), None, "overflow");
}

#[test]
fn dequantize_rejects_wrong_lengths() {
    for dtype in DType::ALL {
        let n = dtype.block_size() * 2;
        let bytes = vec![0u8; dtype.row_bytes(n).expect("whole blocks")];
        let mut out = vec![0.0f32; n];
        assert_eq!(dequantize_row(dtype, &bytes, &mut out), Ok(()));

        let short = &bytes[..bytes.len() - 1];
        assert_eq!(
            dequantize_row(dtype, short, &mut out),
            Err(DTypeError::WrongByteLength {
                dtype,
                n_elements: n,
                expected_bytes: bytes.len(),
                actual_bytes: bytes.len() - 1,
            })
        );
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            dequantize_row(dtype, &long, &mut out),
            Err(DTypeError::WrongByteLength { .. })
        ));
        if dtype.block_size() > 1 {
            let mut ragged = vec![0.0f32; n - 1];
            assert_eq!(
                dequantize_row(dtype, &bytes, &mut ragged),
                Err(DTypeError::NotWholeBlocks {
                    dtype,
                    n_elements: n - 1,
                    block_size: dtype.block_size(),
                })
            );
        }
    }
}

#[test]
fn quantize_rejects_wrong_lengths_and_unsupported_types() {
    for dtype in DType::ALL {
        let n = dtype.block_size() * 2;
        let x = vec![0.5f32; n];
        let mut bytes = vec![0u8; dtype.row_bytes(n).expect("whole blocks")];
        if dtype.traits().from_f32.is_none() {
            assert_eq!(
                quantize_row(dtype, &x, &mut bytes),
                Err(DTypeError::NoQuantizer(dtype))
            );
            continue;
        }
        assert_eq!(quantize_row(dtype, &x, &mut bytes), Ok(()));
        let mut short = vec![0u8; bytes.len() - 1];
        assert!(matches!(
            quantize_row(dtype, &x, &mut short),
            Err(DTypeError::WrongByteLength { .. })
        ));
        if dtype.block_size() > 1 {
            assert!(matches!(
                quantize_row(dtype, &x[..n - 1], &mut bytes),
                Err(DTypeError::NotWholeBlocks { .. })
            ));
        }
    }
}

#[test]
fn vec_dot_row_rejects_wrong_lengths() {
    for dtype in DType::ALL {
        let partner = dtype.vec_dot_type();
        let n = dtype.block_size().max(partner.block_size()) * 2;
        let w = vec![0u8; dtype.row_bytes(n).expect("whole blocks")];
        let x = vec![0u8; partner.row_bytes(n).expect("whole blocks")];
        assert_eq!(vec_dot_row(dtype, n, &w, &x), Ok(0.0));
        assert!(matches!(
            vec_dot_row(dtype, n, &w[1..], &x),
            Err(DTypeError::WrongByteLength { dtype: d, .. }) if d == dtype
        ));
        assert!(matches!(
            vec_dot_row(dtype, n, &w, &x[1..]),
            Err(DTypeError::WrongByteLength { dtype: d, .. }) if d == partner
        ));
    }
}

/// The raw table kernels take whatever they are given: short or ragged slices are processed
/// up to the last whole block and never panic.
#[test]
fn raw_kernels_do_not_panic_on_short_input() {
    for dtype in DType::ALL {
        let traits = dtype.traits();
        let n = dtype.block_size() * 2;
        let bytes = vec![0x5Au8; dtype.row_bytes(n).expect("whole blocks")];
        let mut out = vec![0.0f32; n];
        (traits.to_f32)(&bytes[..bytes.len() / 2 + 1], &mut out);
        (traits.to_f32)(&bytes, &mut out[..n / 2 + 1]);
        let partner_bytes =
            vec![0x5Au8; traits.vec_dot_type.row_bytes(n * 4).expect("whole blocks")];
        let _ = (traits.vec_dot)(n * 4, &bytes, &partner_bytes);
        let _ = (traits.vec_dot)(n, &bytes[..3], &partner_bytes[..5]);
        if let Some(from_f32) = traits.from_f32 {
            let x = vec![1.0f32; n];
            let mut q = vec![0u8; bytes.len()];
            from_f32(&x[..n / 2 + 1], &mut q);
            let half_row = q.len() / 2 + 1;
            from_f32(&x, &mut q[..half_row]);
        }
    }
}

#[test]
fn errors_read_as_one_line() {
    let e = DTypeError::WrongByteLength {
        dtype: DType::Q4_K,
        n_elements: 512,
        expected_bytes: 288,
        actual_bytes: 100,
    };
    assert_eq!(
        e.to_string(),
        "Q4_K row of 512 elements needs 288 bytes, got 100"
    );
    let e = DTypeError::NotWholeBlocks {
        dtype: DType::Q8_0,
        n_elements: 33,
        block_size: 32,
    };
    assert_eq!(
        e.to_string(),
        "Q8_0 row of 33 elements is not a whole number of 32-element blocks"
    );
    assert_eq!(
        DTypeError::NoQuantizer(DType::Q6_K).to_string(),
        "wazn cannot quantize to Q6_K"
    );
}

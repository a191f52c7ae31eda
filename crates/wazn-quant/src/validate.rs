//! The check llama.cpp runs on every quantized row before it is written
//! (`ggml_validate_row_data`): no NaN or infinity in plain floats, and none in the f16 scales
//! (and minimums) of the quantized blocks. A model whose weights overflow a type is refused
//! rather than written broken.

use wazn_formats::GgmlType;

/// Where the f16 fields of a block lie that must be finite, and the block size in bytes.
fn f16_fields(ggml_type: GgmlType) -> Option<(usize, &'static [usize])> {
    use GgmlType as G;
    Some(match ggml_type {
        G::Q4_0 => (18, &[0]),
        G::Q4_1 => (20, &[0, 2]),
        G::Q5_0 => (22, &[0]),
        G::Q5_1 => (24, &[0, 2]),
        G::Q8_0 => (34, &[0]),
        // block_q2_K: scales[16], qs[64], d, dmin
        G::Q2_K => (84, &[80, 82]),
        // block_q3_K: hmask[32], qs[64], scales[12], d
        G::Q3_K => (110, &[108]),
        // block_q4_K / block_q5_K: d, dmin first
        G::Q4_K => (144, &[0, 2]),
        G::Q5_K => (176, &[0, 2]),
        // block_q6_K: ql[128], qh[64], scales[16], d
        G::Q6_K => (210, &[208]),
        _ => return None,
    })
}

/// Why `data` (whole blocks of `ggml_type`) would be refused, or `None` if it is sound.
pub fn invalid_data(ggml_type: GgmlType, data: &[u8]) -> Option<String> {
    use GgmlType as G;
    let bad_f16 = |bits: u16| bits & 0x7c00 == 0x7c00;
    match ggml_type {
        G::F32 => data
            .chunks_exact(4)
            .position(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & 0x7f80_0000 == 0x7f80_0000)
            .map(|i| format!("value {i} is NaN or infinite")),
        G::F16 => data
            .chunks_exact(2)
            .position(|b| bad_f16(u16::from_le_bytes([b[0], b[1]])))
            .map(|i| format!("value {i} is NaN or infinite in F16")),
        G::BF16 => data
            .chunks_exact(2)
            .position(|b| u16::from_le_bytes([b[0], b[1]]) & 0x7fff >= 0x7f80)
            .map(|i| format!("value {i} is NaN or infinite in BF16")),
        // The E8M0 exponent 0xFF is NaN.
        G::MXFP4 => data
            .chunks_exact(17)
            .position(|b| b[0] == 0xff)
            .map(|i| format!("block {i} has a NaN scale")),
        other => {
            let (block_bytes, offsets) = f16_fields(other)?;
            data.chunks_exact(block_bytes)
                .position(|block| {
                    offsets
                        .iter()
                        .any(|&o| bad_f16(u16::from_le_bytes([block[o], block[o + 1]])))
                })
                .map(|i| format!("block {i} has a NaN or infinite scale"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_non_finite_values_and_scales() {
        assert_eq!(invalid_data(GgmlType::F32, &1.0f32.to_le_bytes()), None);
        assert!(invalid_data(GgmlType::F32, &f32::NAN.to_le_bytes()).is_some());
        let inf16 = 0x7c00u16.to_le_bytes();
        assert!(invalid_data(GgmlType::F16, &[0, 0, inf16[0], inf16[1]])
            .unwrap()
            .contains("value 1"));
        let mut block = [0u8; 34];
        assert_eq!(invalid_data(GgmlType::Q8_0, &block), None);
        block[..2].copy_from_slice(&inf16);
        assert!(invalid_data(GgmlType::Q8_0, &block).is_some());
        let mut q4k = [0u8; 144];
        q4k[2..4].copy_from_slice(&inf16);
        assert!(invalid_data(GgmlType::Q4_K, &q4k).is_some());
        assert!(invalid_data(GgmlType::BF16, &0x7f80u16.to_le_bytes()).is_some());
        assert_eq!(invalid_data(GgmlType::BF16, &0x7f7fu16.to_le_bytes()), None);
    }
}

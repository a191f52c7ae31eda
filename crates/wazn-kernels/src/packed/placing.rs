//! Packing a stored block straight into its group block, four codes to a word: the path
//! [`super::pack_into`] takes, since every weight byte of a model passes through it at
//! load. It writes exactly what [`layouts::place`] writes for the decoded block (the
//! layouts' definition; a test holds the two equal on random blocks of every type).

use super::layouts::{self, code_fields, field, head_at, head_fields, put_k4_scales};
use super::GROUP_ROWS;
use crate::dtype::DType;

/// The low nibble of each byte of a word.
const LOW: u32 = 0x0F0F_0F0F;

fn word(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// One word of a nibble pair: byte `i` holds the code of byte `i` of `a` in its low
/// nibble and that of `b` in its high nibble, the codes being the low (or, `high`, the
/// high) nibbles of `a`'s and `b`'s bytes.
fn nibble_pair(a: u32, b: u32, high: bool) -> u32 {
    if high {
        ((a >> 4) & LOW) | (b & !LOW)
    } else {
        (a & LOW) | ((b & LOW) << 4)
    }
}

/// One byte of a 5th-bits field: of the 32 codes of a chunk, `bit(m)` is bit 4 of code
/// `m`; the byte holds those of codes `8p + i` and `8p + 4 + i` for the 4 pairs `p`.
fn fifth_bits_byte(i: usize, bit: impl Fn(usize) -> u8) -> u8 {
    (0..4).fold(0, |byte, p| {
        byte | (bit(8 * p + i) << (2 * p)) | (bit(8 * p + 4 + i) << (2 * p + 1))
    })
}

/// Writes row `j`'s stored `block` of `dtype` (a packed type) into the group block `dst`
/// (zeroed before the first row).
pub(super) fn place_block(dtype: DType, block: &[u8], j: usize, dst: &mut [u8]) {
    let j = j % GROUP_ROWS;
    match dtype {
        DType::Mxfp4 => dst[j] = block[0],
        DType::Q6_K => dst[head_at(0, j)..][..2].copy_from_slice(&block[208..210]),
        _ => {
            for n in 0..head_fields(dtype) {
                dst[head_at(n, j)..][..2].copy_from_slice(&block[2 * n..2 * n + 2]);
            }
        }
    }
    match dtype {
        DType::Q8_0 => {
            let steps = field::<256>(dst, 16);
            for s in 0..8 {
                steps[32 * s + 4 * j..][..4].copy_from_slice(&block[2 + 4 * s..][..4]);
            }
        }
        DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Mxfp4 => {
            place_32_block(dtype, block, j, dst)
        }
        DType::Q4_K | DType::Q5_K => place_k4_block(dtype, block, j, dst),
        DType::Q6_K => place_q6_k_block(block, j, dst),
        _ => {}
    }
}

/// The codes of the 32-code types: code `k < 16` is the low nibble of byte `k` of the
/// codes, code `16 + k` its high nibble; Q5_0/Q5_1 keep bit 4 of code `k` in bit `k` of
/// a 32-bit word.
fn place_32_block(dtype: DType, block: &[u8], j: usize, dst: &mut [u8]) {
    let (qh, qs) = match dtype {
        DType::Q4_0 => (None, 2),
        DType::Q4_1 => (None, 4),
        DType::Q5_0 => (Some(2), 6),
        DType::Q5_1 => (Some(4), 8),
        _ => (None, 1),
    };
    let qs = &block[qs..qs + 16];
    let fields = code_fields(dtype, 0);
    let nibbles = field::<128>(dst, fields.nibbles);
    for p in 0..4 {
        // Codes 8p .. 8p + 8 are nibbles of bytes 8(p % 2) .. 8(p % 2) + 8.
        let at = 8 * (p % 2);
        let pair = nibble_pair(word(qs, at), word(qs, at + 4), p >= 2);
        nibbles[32 * p + 4 * j..][..4].copy_from_slice(&pair.to_le_bytes());
    }
    if let (Some(qh), Some(at)) = (qh, fields.fifth_bits) {
        let high = word(block, qh);
        let bits = field::<32>(dst, at);
        for i in 0..4 {
            bits[4 * j + i] = fifth_bits_byte(i, |m| ((high >> m) & 1) as u8);
        }
    }
}

/// Q4_K/Q5_K: byte `l` of the 32 code bytes of quarter `c` holds code `64c + l` in its
/// low nibble and `64c + 32 + l` in its high one, so chunk `2c + h` is the low (`h = 0`)
/// or high nibbles of those 32 bytes; Q5_K's byte `l` of the 5th bits holds bit 4 of
/// chunk `k`'s code `l` in bit `k`.
fn place_k4_block(dtype: DType, block: &[u8], j: usize, dst: &mut [u8]) {
    let (mut scales, mut mins) = ([0u8; 8], [0u8; 8]);
    layouts::unpack_scales_k4(&block[4..16], &mut scales, &mut mins);
    put_k4_scales(&scales, &mins, j, field::<96>(dst, 32));
    let (qh, qs) = if dtype == DType::Q5_K {
        (Some(&block[16..48]), &block[48..176])
    } else {
        (None, &block[16..144])
    };
    for chunk in 0..8 {
        let fields = code_fields(dtype, chunk);
        let quarter = &qs[32 * (chunk / 2)..][..32];
        let nibbles = field::<128>(dst, fields.nibbles);
        for p in 0..4 {
            let pair = nibble_pair(
                word(quarter, 8 * p),
                word(quarter, 8 * p + 4),
                chunk % 2 == 1,
            );
            nibbles[32 * p + 4 * j..][..4].copy_from_slice(&pair.to_le_bytes());
        }
        if let (Some(qh), Some(at)) = (qh, fields.fifth_bits) {
            let bits = field::<32>(dst, at);
            for i in 0..4 {
                bits[4 * j + i] = fifth_bits_byte(i, |m| (qh[m] >> chunk) & 1);
            }
        }
    }
}

/// Q6_K: in half `h` (128 codes), chunk `4h + t` has its low 4 bits in the low (`t < 2`)
/// or high nibbles of the 32 bytes `ql[64h + 32(t % 2) ..]`, and its top 2 bits in bits
/// `2t .. 2t + 2` of `qh[32h ..]`.
fn place_q6_k_block(block: &[u8], j: usize, dst: &mut [u8]) {
    let (ql, qh) = (&block[..128], &block[128..192]);
    let table = field::<128>(dst, 16);
    for (s, &scale) in block[192..208].iter().enumerate() {
        table[16 * (s / 2) + 2 * j + s % 2] = scale;
    }
    for chunk in 0..8 {
        let (h, t) = (chunk / 4, chunk % 4);
        let fields = code_fields(DType::Q6_K, chunk);
        let low = &ql[64 * h + 32 * (t % 2)..][..32];
        let nibbles = field::<128>(dst, fields.nibbles);
        for p in 0..4 {
            let pair = nibble_pair(word(low, 8 * p), word(low, 8 * p + 4), t >= 2);
            nibbles[32 * p + 4 * j..][..4].copy_from_slice(&pair.to_le_bytes());
        }
        if let Some(at) = fields.top_bits {
            let top = &qh[32 * h..][..32];
            let bits = field::<64>(dst, at);
            for half in 0..2 {
                for i in 0..4 {
                    bits[32 * half + 4 * j + i] = (0..4).fold(0, |byte, n| {
                        byte | (((top[16 * half + 4 * n + i] >> (2 * t)) & 3) << (2 * n))
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packed::PACKED_TYPES;

    /// Every row position, random blocks (every bit pattern is a block of these types):
    /// the fast path writes what the layouts' definition writes.
    #[test]
    fn placing_a_block_is_placing_its_fields() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        };
        let mut fields = layouts::Fields::new();
        for dtype in PACKED_TYPES {
            let block_bytes = dtype.type_size();
            for _ in 0..16 {
                let (mut fast, mut reference) = (
                    vec![0u8; GROUP_ROWS * block_bytes],
                    vec![0u8; GROUP_ROWS * block_bytes],
                );
                for j in 0..GROUP_ROWS {
                    let block: Vec<u8> = (0..block_bytes).map(|_| next()).collect();
                    place_block(dtype, &block, j, &mut fast);
                    layouts::decode(dtype, &block, &mut fields);
                    layouts::place(dtype, &fields, j, &mut reference);
                }
                assert_eq!(fast, reference, "{dtype}");
            }
        }
    }
}

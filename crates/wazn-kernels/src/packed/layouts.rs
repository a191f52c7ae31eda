//! The byte layout of each packed type: where the fields of row `j`'s block `b` lie in
//! the group block `b` of its group of 8 rows.
//!
//! A stored block is first decoded into its [`Fields`] (raw scale bytes and unsigned
//! codes in element order), which are placed into the group block; unpacking reads the
//! fields back and encodes the stored block again. Both directions are bijections on the
//! bits, so packing loses nothing ([`super::unpack_row`] gives every row's bytes back).
//!
//! Group blocks (`8 ×` the type's block bytes), offsets in bytes; `d`, `m`, `dmin` are
//! the 8 rows' f16 scales, row 0 first; MXFP4's `e` are the 8 exponent bytes:
//!
//! | type | bytes | fields |
//! |---|---:|---|
//! | Q8_0 | 272 | `d` @0, 8 code steps @16 |
//! | Q4_0 | 144 | `d` @0, nibble pairs @16 |
//! | Q4_1 | 160 | `d` @0, `m` @16, nibble pairs @32 |
//! | Q5_0 | 176 | `d` @0, 5th bits @16, nibble pairs @48 |
//! | Q5_1 | 192 | `d` @0, `m` @16, 5th bits @32, nibble pairs @64 |
//! | MXFP4 | 136 | `e` @0, nibble pairs @8 |
//! | Q4_K | 1152 | `d` @0, `dmin` @16, scales and mins @32, then per 32-code chunk `c` nibble pairs @128 + 128c |
//! | Q5_K | 1408 | as Q4_K to @128, then per chunk `c` @128 + 160c: 5th bits, nibble pairs |
//! | Q6_K | 1680 | `d` @0, scales @16, then per chunk `c` @144 + 192c: top bits, nibble pairs |
//!
//! The code fields cover 32 codes of the 8 rows (k-quants: chunk `c` holds codes
//! `32c .. 32c + 32`), `i < 4`:
//! - **code steps** (Q8_0, 256 bytes): step `s` (32 bytes) holds codes `4s .. 4s + 4` of
//!   row 0, then of row 1, … of row 7.
//! - **nibble pairs** (128 bytes): in pair `p` (32 bytes), byte `4j + i` holds code
//!   `8p + i` of row `j` in its low nibble and code `8p + 4 + i` in its high nibble.
//! - **5th bits** (32 bytes): byte `4j + i` holds bit 4 of code `8p + i` in bit `2p` and
//!   bit 4 of code `8p + 4 + i` in bit `2p + 1`, for the 4 pairs `p`.
//! - **top bits** (Q6_K, 64 bytes): in half `h` (32 bytes), byte `4j + i` holds bits 4..6
//!   of codes `16h + i`, `16h + 4 + i`, `16h + 8 + i`, `16h + 12 + i` in bits 0..2, 2..4,
//!   4..6 and 6..8.
//! - **Q4_K/Q5_K scales and mins** (96 bytes; 6-bit values of sub-blocks `s` of 32
//!   codes): byte `8s + j` (`s < 4`) holds the low 4 bits of row `j`'s scales `s` and
//!   `s + 4` (low, high nibble); byte `32 + 16q + 2j + t` (`q, t < 2`) the low 4 bits of
//!   its mins `2q + t` and `2q + t + 4`; byte `64 + k` the top 2 bits of the four values
//!   whose low bits bytes `k` and `32 + k` hold, in the order scale low, scale high, min
//!   low, min high. Read as nibbles and widened, the scales come out in sub-block order,
//!   8 rows each, and the mins in pairs of sub-blocks `(2q, 2q + 1)` per row.
//! - **Q6_K scales** (128 bytes, i8 per sub-block of 16 codes): byte `16c + 2j + t` holds
//!   row `j`'s scale of sub-block `2c + t`.

use super::GROUP_ROWS;
use crate::dtype::DType;

/// Codes per nibble-pair field.
const CHUNK: usize = 32;

/// One stored block decoded into the fields a packed layout places.
pub(super) struct Fields {
    /// The scale bytes in stored order: `d` (or MXFP4's exponent, byte 0), then `m` /
    /// `dmin` where the type has one.
    head: [u8; 4],
    /// Q4_K/Q5_K: the 8 6-bit sub-block scales; Q6_K: the 16 i8 scales.
    scales: [u8; 16],
    /// Q4_K/Q5_K: the 8 6-bit sub-block mins.
    mins: [u8; 8],
    /// Unsigned codes in element order (Q8_0: the i8 codes' bytes).
    codes: [u8; 256],
}

impl Fields {
    pub(super) fn new() -> Fields {
        Fields {
            head: [0; 4],
            scales: [0; 16],
            mins: [0; 8],
            codes: [0; 256],
        }
    }
}

/// The Q4_K/Q5_K 12-byte packing of 8 6-bit scales and 8 6-bit mins.
pub(super) fn unpack_scales_k4(p: &[u8], scales: &mut [u8], mins: &mut [u8]) {
    for j in 0..4 {
        scales[j] = p[j] & 63;
        mins[j] = p[j + 4] & 63;
        scales[j + 4] = (p[j + 8] & 0x0F) | ((p[j] >> 6) << 4);
        mins[j + 4] = (p[j + 8] >> 4) | ((p[j + 4] >> 6) << 4);
    }
}

fn pack_scales_k4(scales: &[u8], mins: &[u8], p: &mut [u8]) {
    for j in 0..4 {
        p[j] = (scales[j] & 63) | ((scales[j + 4] >> 4) << 6);
        p[j + 4] = (mins[j] & 63) | ((mins[j + 4] >> 4) << 6);
        p[j + 8] = (scales[j + 4] & 0x0F) | ((mins[j + 4] & 0x0F) << 4);
    }
}

/// Decodes a stored block of `dtype` (one of the packed types) into `f`, overwriting
/// every field [`place`] reads for that type (so one `Fields` serves block after block).
/// With [`place`], the definition of packing that the fast path
/// (`super::placing::place_block`) is tested against.
#[cfg(test)]
pub(super) fn decode(dtype: DType, block: &[u8], f: &mut Fields) {
    let c = &mut f.codes;
    match dtype {
        DType::Q8_0 => {
            f.head[..2].copy_from_slice(&block[..2]);
            c[..32].copy_from_slice(&block[2..34]);
        }
        DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Mxfp4 => {
            let (head, qh, qs) = match dtype {
                DType::Q4_0 => (2, None, 2),
                DType::Q4_1 => (4, None, 4),
                DType::Q5_0 => (2, Some(2), 6),
                DType::Q5_1 => (4, Some(4), 8),
                _ => (1, None, 1),
            };
            f.head[..head].copy_from_slice(&block[..head]);
            for k in 0..16 {
                c[k] = block[qs + k] & 0x0F;
                c[k + 16] = block[qs + k] >> 4;
            }
            if let Some(at) = qh {
                let bits =
                    u32::from_le_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]]);
                for (k, code) in c[..32].iter_mut().enumerate() {
                    *code |= (((bits >> k) & 1) as u8) << 4;
                }
            }
        }
        DType::Q4_K | DType::Q5_K => {
            f.head.copy_from_slice(&block[..4]);
            unpack_scales_k4(&block[4..16], &mut f.scales[..8], &mut f.mins);
            let (qh, qs) = if dtype == DType::Q5_K {
                (Some(16), 48)
            } else {
                (None, 16)
            };
            for chunk in 0..4 {
                for l in 0..32 {
                    let byte = block[qs + 32 * chunk + l];
                    c[64 * chunk + l] = byte & 0x0F;
                    c[64 * chunk + 32 + l] = byte >> 4;
                    if let Some(at) = qh {
                        let high = block[at + l];
                        c[64 * chunk + l] |= ((high >> (2 * chunk)) & 1) << 4;
                        c[64 * chunk + 32 + l] |= ((high >> (2 * chunk + 1)) & 1) << 4;
                    }
                }
            }
        }
        DType::Q6_K => {
            let (ql, qh) = (&block[..128], &block[128..192]);
            f.scales.copy_from_slice(&block[192..208]);
            f.head[..2].copy_from_slice(&block[208..210]);
            for half in 0..2 {
                let (ql, qh) = (&ql[64 * half..], &qh[32 * half..]);
                for l in 0..32 {
                    let e = 128 * half + l;
                    c[e] = (ql[l] & 0x0F) | ((qh[l] & 3) << 4);
                    c[e + 32] = (ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4);
                    c[e + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                    c[e + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                }
            }
        }
        _ => {}
    }
}

/// Encodes `f` as a stored block of `dtype`: the inverse of [`decode`].
pub(super) fn encode(dtype: DType, f: &Fields, block: &mut [u8]) {
    let c = &f.codes;
    match dtype {
        DType::Q8_0 => {
            block[..2].copy_from_slice(&f.head[..2]);
            block[2..34].copy_from_slice(&c[..32]);
        }
        DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Mxfp4 => {
            let (head, qh, qs) = match dtype {
                DType::Q4_0 => (2, None, 2),
                DType::Q4_1 => (4, None, 4),
                DType::Q5_0 => (2, Some(2), 6),
                DType::Q5_1 => (4, Some(4), 8),
                _ => (1, None, 1),
            };
            block[..head].copy_from_slice(&f.head[..head]);
            for k in 0..16 {
                block[qs + k] = (c[k] & 0x0F) | ((c[k + 16] & 0x0F) << 4);
            }
            if let Some(at) = qh {
                let bits = c[..32].iter().enumerate().fold(0u32, |bits, (k, &code)| {
                    bits | (((code >> 4) as u32 & 1) << k)
                });
                block[at..at + 4].copy_from_slice(&bits.to_le_bytes());
            }
        }
        DType::Q4_K | DType::Q5_K => {
            block[..4].copy_from_slice(&f.head);
            pack_scales_k4(&f.scales[..8], &f.mins, &mut block[4..16]);
            let (qh, qs) = if dtype == DType::Q5_K {
                (Some(16), 48)
            } else {
                (None, 16)
            };
            if let Some(at) = qh {
                block[at..at + 32].fill(0);
            }
            for chunk in 0..4 {
                for l in 0..32 {
                    let (low, high) = (c[64 * chunk + l], c[64 * chunk + 32 + l]);
                    block[qs + 32 * chunk + l] = (low & 0x0F) | ((high & 0x0F) << 4);
                    if let Some(at) = qh {
                        block[at + l] |= ((low >> 4) & 1) << (2 * chunk);
                        block[at + l] |= ((high >> 4) & 1) << (2 * chunk + 1);
                    }
                }
            }
        }
        DType::Q6_K => {
            block[192..208].copy_from_slice(&f.scales);
            block[208..210].copy_from_slice(&f.head[..2]);
            for half in 0..2 {
                for l in 0..32 {
                    let e = 128 * half + l;
                    let (q1, q2, q3, q4) = (c[e], c[e + 32], c[e + 64], c[e + 96]);
                    block[64 * half + l] = (q1 & 0x0F) | ((q3 & 0x0F) << 4);
                    block[64 * half + l + 32] = (q2 & 0x0F) | ((q4 & 0x0F) << 4);
                    block[128 + 32 * half + l] = ((q1 >> 4) & 3)
                        | (((q2 >> 4) & 3) << 2)
                        | (((q3 >> 4) & 3) << 4)
                        | (((q4 >> 4) & 3) << 6);
                }
            }
        }
        _ => {}
    }
}

/// Where the code fields of chunk `c` start in a group block, and whether the type
/// has 5th bits (`Some(offset)`) or Q6_K's top bits.
pub(super) struct CodeFields {
    pub(super) nibbles: usize,
    pub(super) fifth_bits: Option<usize>,
    pub(super) top_bits: Option<usize>,
}

pub(super) fn code_fields(dtype: DType, chunk: usize) -> CodeFields {
    let (nibbles, fifth_bits, top_bits) = match dtype {
        DType::Q4_0 => (16, None, None),
        DType::Q4_1 => (32, None, None),
        DType::Q5_0 => (48, Some(16), None),
        DType::Q5_1 => (64, Some(32), None),
        DType::Mxfp4 => (8, None, None),
        DType::Q4_K => (128 + 128 * chunk, None, None),
        DType::Q5_K => (128 + 160 * chunk + 32, Some(128 + 160 * chunk), None),
        _ => (144 + 192 * chunk + 64, None, Some(144 + 192 * chunk)),
    };
    CodeFields {
        nibbles,
        fifth_bits,
        top_bits,
    }
}

/// The f16 scales (and offsets / mins) of the group block header: bytes of field `n`
/// (0: `d`, 1: `m` / `dmin`) of row `j`.
pub(super) fn head_at(n: usize, j: usize) -> usize {
    16 * n + 2 * j
}

/// How many head fields (2-byte scales) a type has in its stored block.
pub(super) fn head_fields(dtype: DType) -> usize {
    match dtype {
        DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K => 2,
        _ => 1,
    }
}

/// Writes row `j`'s fields into the group block `dst` (zeroed before the first row).
#[cfg(test)]
pub(super) fn place(dtype: DType, f: &Fields, j: usize, dst: &mut [u8]) {
    // Bounded here, so that the fixed-size fields below index without checks: packing
    // runs over every weight byte at load.
    let j = j % GROUP_ROWS;
    let c = &f.codes;
    if dtype == DType::Mxfp4 {
        dst[j] = f.head[0];
    } else {
        for n in 0..head_fields(dtype) {
            dst[head_at(n, j)..][..2].copy_from_slice(&f.head[2 * n..2 * n + 2]);
        }
    }
    match dtype {
        DType::Q8_0 => {
            let steps = field::<256>(dst, 16);
            for s in 0..8 {
                steps[32 * s + 4 * j..][..4].copy_from_slice(&c[4 * s..4 * s + 4]);
            }
            return;
        }
        DType::Q4_K | DType::Q5_K => {
            put_k4_scales(&f.scales[..8], &f.mins, j, field::<96>(dst, 32));
        }
        DType::Q6_K => {
            let table = field::<128>(dst, 16);
            for (s, &scale) in f.scales.iter().enumerate() {
                table[16 * (s / 2) + 2 * j + s % 2] = scale;
            }
        }
        _ => {}
    }
    let n_chunks = dtype.block_size() / CHUNK;
    for chunk in 0..n_chunks {
        let codes: &[u8; CHUNK] = c[CHUNK * chunk..][..CHUNK]
            .try_into()
            .expect("a chunk is CHUNK codes");
        let fields = code_fields(dtype, chunk);
        let nibbles = field::<128>(dst, fields.nibbles);
        for p in 0..4 {
            for i in 0..4 {
                let (low, high) = (codes[8 * p + i], codes[8 * p + 4 + i]);
                nibbles[32 * p + 4 * j + i] = (low & 0x0F) | ((high & 0x0F) << 4);
            }
        }
        if let Some(at) = fields.fifth_bits {
            let bits = field::<32>(dst, at);
            for i in 0..4 {
                let mut byte = 0;
                for p in 0..4 {
                    byte |= ((codes[8 * p + i] >> 4) & 1) << (2 * p);
                    byte |= ((codes[8 * p + 4 + i] >> 4) & 1) << (2 * p + 1);
                }
                bits[4 * j + i] = byte;
            }
        }
        if let Some(at) = fields.top_bits {
            let bits = field::<64>(dst, at);
            for h in 0..2 {
                for i in 0..4 {
                    let mut byte = 0;
                    for n in 0..4 {
                        byte |= ((codes[16 * h + 4 * n + i] >> 4) & 3) << (2 * n);
                    }
                    bits[32 * h + 4 * j + i] = byte;
                }
            }
        }
    }
}

/// Writes row `j`'s Q4_K/Q5_K sub-block scales and mins (8 each, 6 bits) into the
/// 96-byte table of a zeroed group block.
pub(super) fn put_k4_scales(scales: &[u8], mins: &[u8], j: usize, table: &mut [u8; 96]) {
    let j = j % GROUP_ROWS;
    for s in 0..4 {
        let k = 8 * s + j;
        table[k] = (scales[s] & 0x0F) | ((scales[s + 4] & 0x0F) << 4);
        table[64 + k] |= (scales[s] >> 4) | ((scales[s + 4] >> 4) << 2);
    }
    for q in 0..2 {
        for t in 0..2 {
            let k = 16 * q + 2 * j + t;
            let (low, high) = (mins[2 * q + t], mins[2 * q + t + 4]);
            table[32 + k] = (low & 0x0F) | ((high & 0x0F) << 4);
            table[64 + k] |= ((low >> 4) << 4) | ((high >> 4) << 6);
        }
    }
}

/// The `N` bytes of a group block at `at`, as an array (checked once, here).
pub(super) fn field<const N: usize>(group_block: &mut [u8], at: usize) -> &mut [u8; N] {
    (&mut group_block[at..at + N])
        .try_into()
        .expect("a field lies inside its group block")
}

/// Reads row `j`'s fields out of the group block `src`: the inverse of [`place`].
pub(super) fn take(dtype: DType, src: &[u8], j: usize) -> Fields {
    let mut f = Fields::new();
    if dtype == DType::Mxfp4 {
        f.head[0] = src[j];
    } else {
        for n in 0..head_fields(dtype) {
            f.head[2 * n..2 * n + 2].copy_from_slice(&src[head_at(n, j)..][..2]);
        }
    }
    match dtype {
        DType::Q8_0 => {
            for k in 0..32 {
                f.codes[k] = src[16 + 32 * (k / 4) + 4 * j + k % 4];
            }
            return f;
        }
        DType::Q4_K | DType::Q5_K => {
            for s in 0..4 {
                let k = 8 * s + j;
                let top = src[96 + k];
                f.scales[s] = (src[32 + k] & 0x0F) | ((top & 3) << 4);
                f.scales[s + 4] = (src[32 + k] >> 4) | (((top >> 2) & 3) << 4);
            }
            for q in 0..2 {
                for t in 0..2 {
                    let k = 16 * q + 2 * j + t;
                    let top = src[96 + k];
                    f.mins[2 * q + t] = (src[64 + k] & 0x0F) | (((top >> 4) & 3) << 4);
                    f.mins[2 * q + t + 4] = (src[64 + k] >> 4) | ((top >> 6) << 4);
                }
            }
        }
        DType::Q6_K => {
            for s in 0..16 {
                f.scales[s] = src[16 + 16 * (s / 2) + 2 * j + s % 2];
            }
        }
        _ => {}
    }
    let n_chunks = dtype.block_size() / CHUNK;
    for chunk in 0..n_chunks {
        let fields = code_fields(dtype, chunk);
        let codes = &mut f.codes[CHUNK * chunk..][..CHUNK];
        for p in 0..4 {
            for i in 0..4 {
                let byte = src[fields.nibbles + 32 * p + 4 * j + i];
                codes[8 * p + i] = byte & 0x0F;
                codes[8 * p + 4 + i] = byte >> 4;
            }
        }
        if let Some(at) = fields.fifth_bits {
            for i in 0..4 {
                let byte = src[at + 4 * j + i];
                for p in 0..4 {
                    codes[8 * p + i] |= ((byte >> (2 * p)) & 1) << 4;
                    codes[8 * p + 4 + i] |= ((byte >> (2 * p + 1)) & 1) << 4;
                }
            }
        }
        if let Some(at) = fields.top_bits {
            for h in 0..2 {
                for i in 0..4 {
                    let byte = src[at + 32 * h + 4 * j + i];
                    for n in 0..4 {
                        codes[16 * h + 4 * n + i] |= ((byte >> (2 * n)) & 3) << 4;
                    }
                }
            }
        }
    }
    f
}

//! ggml tensor types as stored in GGUF tensor infos: id, name and block geometry.
//!
//! Only what a file reader needs lives here (how many bytes a row takes); how to decode a
//! block is `wazn-kernels`' business. Ids and sizes follow `ggml.h` / `ggml-common.h`.

use std::fmt;

/// A ggml tensor element type, by its id in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
    NVFP4,
    Q1_0,
}

/// One row of the type table: everything about a type that is not behaviour.
struct TypeRow {
    ggml_type: GgmlType,
    id: u32,
    name: &'static str,
    /// Elements per block.
    block_size: u64,
    /// Bytes per block.
    type_size: u64,
}

const fn row(
    ggml_type: GgmlType,
    id: u32,
    name: &'static str,
    block_size: u64,
    type_size: u64,
) -> TypeRow {
    TypeRow {
        ggml_type,
        id,
        name,
        block_size,
        type_size,
    }
}

/// Super-block size of the K and IQ quants (`QK_K`).
const QK_K: u64 = 256;

/// Indexed by the enum's declaration order (`GgmlType as usize`).
const TABLE: [TypeRow; 34] = [
    row(GgmlType::F32, 0, "F32", 1, 4),
    row(GgmlType::F16, 1, "F16", 1, 2),
    row(GgmlType::Q4_0, 2, "Q4_0", 32, 18),
    row(GgmlType::Q4_1, 3, "Q4_1", 32, 20),
    row(GgmlType::Q5_0, 6, "Q5_0", 32, 22),
    row(GgmlType::Q5_1, 7, "Q5_1", 32, 24),
    row(GgmlType::Q8_0, 8, "Q8_0", 32, 34),
    // ggml's block_q8_1 is two f16 + 32 i8 = 36 bytes (static_assert in ggml-common.h);
    // gguf-py 0.19 still lists 40, from before d and s became f16.
    row(GgmlType::Q8_1, 9, "Q8_1", 32, 36),
    row(GgmlType::Q2_K, 10, "Q2_K", QK_K, 84),
    row(GgmlType::Q3_K, 11, "Q3_K", QK_K, 110),
    row(GgmlType::Q4_K, 12, "Q4_K", QK_K, 144),
    row(GgmlType::Q5_K, 13, "Q5_K", QK_K, 176),
    row(GgmlType::Q6_K, 14, "Q6_K", QK_K, 210),
    row(GgmlType::Q8_K, 15, "Q8_K", QK_K, 292),
    row(GgmlType::IQ2_XXS, 16, "IQ2_XXS", QK_K, 66),
    row(GgmlType::IQ2_XS, 17, "IQ2_XS", QK_K, 74),
    row(GgmlType::IQ3_XXS, 18, "IQ3_XXS", QK_K, 98),
    row(GgmlType::IQ1_S, 19, "IQ1_S", QK_K, 50),
    row(GgmlType::IQ4_NL, 20, "IQ4_NL", 32, 18),
    row(GgmlType::IQ3_S, 21, "IQ3_S", QK_K, 110),
    row(GgmlType::IQ2_S, 22, "IQ2_S", QK_K, 82),
    row(GgmlType::IQ4_XS, 23, "IQ4_XS", QK_K, 136),
    row(GgmlType::I8, 24, "I8", 1, 1),
    row(GgmlType::I16, 25, "I16", 1, 2),
    row(GgmlType::I32, 26, "I32", 1, 4),
    row(GgmlType::I64, 27, "I64", 1, 8),
    row(GgmlType::F64, 28, "F64", 1, 8),
    row(GgmlType::IQ1_M, 29, "IQ1_M", QK_K, 56),
    row(GgmlType::BF16, 30, "BF16", 1, 2),
    row(GgmlType::TQ1_0, 34, "TQ1_0", QK_K, 54),
    row(GgmlType::TQ2_0, 35, "TQ2_0", QK_K, 66),
    row(GgmlType::MXFP4, 39, "MXFP4", 32, 17),
    row(GgmlType::NVFP4, 40, "NVFP4", 64, 36),
    row(GgmlType::Q1_0, 41, "Q1_0", 128, 18),
];

impl GgmlType {
    /// Every known type, in table order.
    pub const ALL: [GgmlType; 34] = {
        let mut all = [GgmlType::F32; 34];
        let mut i = 0;
        while i < TABLE.len() {
            all[i] = TABLE[i].ggml_type;
            i += 1;
        }
        all
    };

    fn row(self) -> &'static TypeRow {
        &TABLE[self as usize]
    }

    /// The type with this id in a GGUF tensor info, or `None` for ids ggml never had or
    /// removed (4, 5, 31–33, 36–38) and ones newer than this table.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TABLE.iter().find(|r| r.id == id).map(|r| r.ggml_type)
    }

    /// The type with this ggml name ("Q4_K", "BF16", ...), ASCII case-insensitive.
    pub fn from_name(name: &str) -> Option<GgmlType> {
        TABLE
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(name))
            .map(|r| r.ggml_type)
    }

    /// The id written in GGUF tensor infos.
    pub fn id(self) -> u32 {
        self.row().id
    }

    /// The ggml name, as printed by llama.cpp and gguf-py.
    pub fn name(self) -> &'static str {
        self.row().name
    }

    /// Elements per block (1 for plain types such as F32).
    pub fn block_size(self) -> u64 {
        self.row().block_size
    }

    /// Bytes per block.
    pub fn type_size(self) -> u64 {
        self.row().type_size
    }

    /// Whether elements are stored in blocks with shared scales (everything but plain
    /// floats and ints).
    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// Bytes taken by `n_elems` consecutive elements (one row), or `None` when `n_elems` is
    /// not a whole number of blocks or the size overflows.
    pub fn row_bytes(self, n_elems: u64) -> Option<u64> {
        let row = self.row();
        if !n_elems.is_multiple_of(row.block_size) {
            return None;
        }
        (n_elems / row.block_size).checked_mul(row.type_size)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_indexed_by_declaration_order() {
        for (i, r) in TABLE.iter().enumerate() {
            assert_eq!(r.ggml_type as usize, i, "{}", r.name);
        }
    }

    #[test]
    fn ids_and_names_round_trip() {
        for t in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(t.id()), Some(t));
            assert_eq!(GgmlType::from_name(t.name()), Some(t));
        }
        for removed in [4, 5, 31, 32, 33, 36, 37, 38, 42, u32::MAX] {
            assert_eq!(GgmlType::from_id(removed), None, "id {removed}");
        }
    }

    #[test]
    fn row_bytes_checks_blocks_and_overflow() {
        assert_eq!(GgmlType::Q4_1.row_bytes(576), Some(18 * 20));
        assert_eq!(GgmlType::Q4_1.row_bytes(33), None);
        assert_eq!(GgmlType::F32.row_bytes(u64::MAX), None);
        assert_eq!(GgmlType::Q4_K.row_bytes(0), Some(0));
    }
}

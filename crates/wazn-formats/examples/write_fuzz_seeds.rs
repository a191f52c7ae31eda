//! Writes small valid GGUF files to seed the `gguf_parse` fuzz target.
//!
//! cargo run -p wazn-formats --example write_fuzz_seeds -- fuzz/seeds/gguf_parse

use std::path::PathBuf;

use wazn_formats::{FormatError, GgmlType, GgufWriter, MetaArray, ValueType};

fn main() -> Result<(), FormatError> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/seeds/gguf_parse".into()),
    );
    std::fs::create_dir_all(&dir).map_err(|source| FormatError::Io {
        path: dir.clone(),
        source,
    })?;

    let seeds = [
        ("empty_v3.gguf", GgufWriter::new()),
        (
            "scalars_v2.gguf",
            GgufWriter::new()
                .version(2)
                .metadata("general.architecture", "llama")
                .metadata("a.u8", 1u8)
                .metadata("a.i8", -1i8)
                .metadata("a.u16", 2u16)
                .metadata("a.i16", -2i16)
                .metadata("a.u32", 3u32)
                .metadata("a.i32", -3i32)
                .metadata("a.f32", 0.5f32)
                .metadata("a.bool", true)
                .metadata("a.u64", 4u64)
                .metadata("a.i64", -4i64)
                .metadata("a.f64", 0.25f64)
                .tensor("w", GgmlType::F32, &[2, 2], vec![0u8; 16]),
        ),
        (
            "arrays_aligned.gguf",
            GgufWriter::new()
                .metadata("general.alignment", 64u32)
                .metadata("tokenizer.ggml.tokens", vec!["<s>", "a", "é"])
                .metadata("tokenizer.ggml.token_type", vec![3i32, 1, 1])
                .metadata("tokenizer.ggml.scores", vec![0.0f32, -1.0, -2.0])
                .metadata(
                    "nested",
                    // UINT8 for the empty array keeps this seed as it was first written.
                    vec![MetaArray::from(vec![1u8]), MetaArray::empty(ValueType::U8)],
                )
                .tensor("q", GgmlType::Q4_1, &[32, 2], vec![0x11u8; 40])
                .tensor("k", GgmlType::Q8_0, &[32], vec![0x22u8; 34])
                .tensor("v", GgmlType::BF16, &[3, 1, 1, 1], vec![0x33u8; 6]),
        ),
        (
            "quant_types.gguf",
            GgufWriter::new()
                .metadata("general.architecture", "gpt-oss")
                .tensor("mx", GgmlType::MXFP4, &[32], vec![1u8; 17])
                .tensor("k4", GgmlType::Q4_K, &[256], vec![2u8; 144])
                .tensor("k6", GgmlType::Q6_K, &[256], vec![3u8; 210])
                .tensor("e", GgmlType::F16, &[0, 4], Vec::new()),
        ),
    ];
    for (name, writer) in seeds {
        let path = dir.join(name);
        writer.write_file(&path)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

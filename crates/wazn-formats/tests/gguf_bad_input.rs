//! Malformed and hostile files: each must give its own clear error, never a panic, and never
//! an allocation sized by an unchecked length (a 2^62-element array must fail at once).

mod common;

use common::Raw;
use wazn_formats::{FormatError, GgmlType, GgufFile, GgufHeader, GgufWriter, MetaArray, MetaValue};

const F32: u32 = 0;
const Q4_1: u32 = 3;
const HUGE: u64 = 1 << 62;

fn parse_err(bytes: &[u8]) -> FormatError {
    match GgufHeader::parse(bytes) {
        Ok(h) => panic!("expected an error, parsed {h:?}"),
        Err(e) => e,
    }
}

/// A scratch directory for file-level tests, removed by the caller.
fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("wazn-formats-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn missing_file_names_the_path() {
    let e = GgufFile::open("/nonexistent/dir/model.gguf").unwrap_err();
    assert!(matches!(e, FormatError::Io { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with("cannot read /nonexistent/dir/model.gguf: "),
        "{msg}"
    );
}

#[test]
fn empty_non_gguf_and_directory_paths_are_named() {
    let dir = scratch("open");
    let empty = dir.join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let e = GgufFile::open(&empty).unwrap_err();
    assert!(matches!(e.without_path(), FormatError::EmptyFile), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "{}: the file is empty (0 bytes), not a GGUF file",
            empty.display()
        )
    );

    let text = dir.join("notes.txt");
    std::fs::write(&text, b"hello world").unwrap();
    let e = GgufFile::open(&text).unwrap_err();
    assert!(
        matches!(e.without_path(), FormatError::BadMagic { .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("notes.txt: not a GGUF file"), "{e}");

    let truncated = dir.join("truncated.gguf");
    std::fs::write(&truncated, &Raw::header(3, 0, 1).0[..20]).unwrap();
    let e = GgufFile::open(&truncated).unwrap_err();
    assert!(
        matches!(e.without_path(), FormatError::Truncated { .. }),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("truncated.gguf: truncated file"),
        "{e}"
    );

    let e = GgufFile::open(&dir).unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn empty_slice_and_bad_magic() {
    assert!(matches!(parse_err(b""), FormatError::EmptyFile));
    let e = parse_err(b"GGML\x03\0\0\0");
    assert_eq!(
        e.to_string(),
        "not a GGUF file: the first bytes are [47, 47, 4d, 4c], expected \"GGUF\" (47 47 55 46)"
    );
    assert!(matches!(parse_err(b"{\""), FormatError::BadMagic { .. }));
    // A prefix of the magic is a truncated GGUF file, not a foreign one.
    let e = parse_err(b"GG");
    assert!(
        matches!(e, FormatError::Truncated { ref what, .. } if what == "magic"),
        "{e}"
    );
}

#[test]
fn unsupported_versions() {
    for version in [0, 1, 4, 0xFFFF_FFFF] {
        let e = parse_err(&Raw::header(version, 0, 0).0);
        assert!(
            matches!(e, FormatError::UnsupportedVersion { version: v } if v == version),
            "{e}"
        );
    }
    let e = parse_err(&Raw::header(1, 0, 0).0);
    assert_eq!(
        e.to_string(),
        "unsupported GGUF version 1: only versions 2 and 3 can be read"
    );
}

#[test]
fn big_endian_is_detected_from_the_swapped_version() {
    for version in [1u32, 2, 3] {
        let e = parse_err(&Raw::header(version.swap_bytes(), 0, 0).0);
        assert!(
            matches!(e, FormatError::BigEndian { version: v } if v == version),
            "{e}"
        );
    }
}

/// A valid file with metadata of several kinds and two tensors, for truncation tests.
fn valid_file() -> Vec<u8> {
    GgufWriter::new()
        .metadata("general.architecture", "llama")
        .metadata("tokenizer.ggml.tokens", vec!["<s>", "a", "bc"])
        .metadata("llama.block_count", 2u32)
        .metadata(
            "nested",
            MetaValue::from(vec![MetaArray::from(vec![1i32, 2])]),
        )
        .tensor("token_embd.weight", GgmlType::Q4_1, &[32, 2], vec![1u8; 40])
        .tensor("output_norm.weight", GgmlType::F32, &[4], vec![2u8; 16])
        .to_bytes()
        .unwrap()
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = valid_file();
    let header = GgufHeader::parse(&bytes).unwrap();
    // Padding after the last tensor is optional, so the file is complete where its data ends.
    let end_of_data = header
        .tensors
        .iter()
        .map(|t| t.offset + t.n_bytes)
        .max()
        .unwrap();
    assert_eq!(
        GgufHeader::parse(&bytes[..end_of_data as usize]).unwrap(),
        header
    );
    for len in 0..end_of_data as usize {
        let e = parse_err(&bytes[..len]);
        let ok = match &e {
            FormatError::EmptyFile => len == 0,
            FormatError::Truncated { .. } | FormatError::CountTooLarge { .. } => {
                (len as u64) < header.data_offset
            }
            FormatError::TensorOutOfBounds { file_size, .. } => *file_size == len as u64,
            _ => false,
        };
        assert!(ok, "prefix of {len} bytes: unexpected {e:?}");
    }
}

#[test]
fn truncation_names_what_was_being_read() {
    let cases: Vec<(Raw, &str)> = vec![
        (
            Raw::default().bytes(b"GGUF").u32(3).u64(0).bytes(&[0; 4]),
            "metadata entry count",
        ),
        (
            Raw::header(3, 0, 1).u64(20).bytes(b"general.arch"),
            "metadata key #0",
        ),
        (
            Raw::header(3, 0, 1).str("k").u32(10).bytes(&[1, 2, 3]),
            "value of metadata key \"k\"",
        ),
        (
            Raw::header(3, 0, 1)
                .str("k")
                .u32(9)
                .u32(8)
                .u64(2)
                .str("abcdefghijklmnop")
                .u64(5)
                .bytes(b"ab"),
            "value of metadata key \"k\"",
        ),
        (
            Raw::header(3, 1, 0).str("weight_matrix").u32(2).u64(4),
            "ne[1] of tensor \"weight_matrix\"",
        ),
        (
            Raw::header(3, 1, 0)
                .str("weight_matrix")
                .u32(1)
                .u64(4)
                .u32(F32)
                .bytes(&[0; 4]),
            "data offset of tensor \"weight_matrix\"",
        ),
    ];
    for (raw, what_expected) in cases {
        let e = parse_err(&raw.0);
        match &e {
            FormatError::Truncated { what, .. } => assert_eq!(what, what_expected),
            other => panic!("{what_expected}: expected Truncated, got {other:?}"),
        }
    }
}

#[test]
fn absurd_lengths_fail_before_allocating() {
    let e = parse_err(&Raw::header(3, 0, 1).u64(HUGE).bytes(b"key").zeros(13).0);
    assert!(
        matches!(
            e,
            FormatError::Truncated {
                needed: HUGE,
                available: 16,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "truncated file: metadata key #0 at byte offset 32 needs 4611686018427387904 bytes \
         but only 16 remain"
    );

    let e = parse_err(&Raw::header(3, 0, 1).str("k").u32(8).u64(HUGE).0);
    assert!(
        matches!(e, FormatError::Truncated { needed: HUGE, .. }),
        "{e:?}"
    );

    let e = parse_err(
        &Raw::header(3, 0, 1)
            .str("k")
            .u32(9)
            .u32(0)
            .u64(HUGE)
            .zeros(16)
            .0,
    );
    assert!(
        matches!(e, FormatError::CountTooLarge { count: HUGE, .. }),
        "{e:?}"
    );
    assert!(e
        .to_string()
        .starts_with("array of metadata key \"k\" at byte offset 41 declares"));

    // count * element size overflows u64.
    let e = parse_err(&Raw::header(3, 0, 1).str("k").u32(9).u32(10).u64(u64::MAX).0);
    assert!(matches!(e, FormatError::CountTooLarge { .. }), "{e:?}");

    let e = parse_err(&Raw::header(3, 0, HUGE).zeros(64).0);
    assert!(
        matches!(e, FormatError::CountTooLarge { ref what, offset: 16, .. } if what == "metadata entry count"),
        "{e:?}"
    );
    let e = parse_err(&Raw::header(3, HUGE, 0).zeros(64).0);
    assert!(
        matches!(e, FormatError::CountTooLarge { ref what, offset: 8, .. } if what == "tensor count"),
        "{e:?}"
    );

    let e = parse_err(&Raw::header(3, 1, 0).u64(HUGE).zeros(32).0);
    assert!(
        matches!(e, FormatError::Truncated { ref what, needed: HUGE, .. } if what == "name of tensor #0")
    );
}

#[test]
fn invalid_utf8_is_named() {
    let e = parse_err(
        &Raw::header(3, 0, 1)
            .u64(2)
            .bytes(&[0xC3, 0x28])
            .u32(4)
            .u32(1)
            .0,
    );
    assert_eq!(
        e.to_string(),
        "metadata key #0 at byte offset 32 is not valid UTF-8"
    );
    let e = parse_err(&Raw::header(3, 0, 1).str("k").u32(8).u64(1).u8(0xFF).0);
    assert_eq!(
        e.to_string(),
        "value of metadata key \"k\" at byte offset 45 is not valid UTF-8"
    );
    let e = parse_err(
        &Raw::header(3, 1, 0)
            .u64(1)
            .u8(0x80)
            .u32(0)
            .u32(F32)
            .u64(0)
            .0,
    );
    assert!(matches!(e, FormatError::InvalidUtf8 { ref what, .. } if what == "name of tensor #0"));
}

#[test]
fn unknown_value_types_are_named() {
    let e = parse_err(&Raw::header(3, 0, 1).str("k").u32(13).u32(0).0);
    assert_eq!(
        e.to_string(),
        "metadata key \"k\" has unknown value type 13 (at byte offset 33)"
    );
    let e = parse_err(
        &Raw::header(3, 0, 1)
            .str("arr")
            .u32(9)
            .u32(77)
            .u64(1)
            .u32(0)
            .0,
    );
    assert!(
        matches!(e, FormatError::UnknownValueType { ref key, type_id: 77, offset: 39 } if key == "arr"),
        "{e:?}"
    );
}

/// Arrays nested `levels` deep around one u8, as raw bytes after a key.
fn nested_arrays(levels: usize) -> Vec<u8> {
    let mut raw = Raw::header(3, 0, 1).str("deep").u32(9);
    for _ in 1..levels {
        raw = raw.u32(9).u64(1);
    }
    raw.u32(0).u64(1).u8(42).pad(32).0
}

#[test]
fn nested_arrays_are_read_up_to_a_depth_bound() {
    let h = GgufHeader::parse(&nested_arrays(wazn_formats::MAX_ARRAY_DEPTH)).unwrap();
    let mut a = h.metadata.get("deep").unwrap().as_array().unwrap();
    for _ in 1..wazn_formats::MAX_ARRAY_DEPTH {
        match a {
            MetaArray::Array(inner) => a = &inner[0],
            other => panic!("not nested deep enough: {other:?}"),
        }
    }
    assert_eq!(a, &MetaArray::U8(vec![42]));

    for levels in [wazn_formats::MAX_ARRAY_DEPTH + 1, 100_000] {
        let e = parse_err(&nested_arrays(levels));
        assert_eq!(
            e.to_string(),
            "metadata key \"deep\" nests arrays deeper than 8 levels"
        );
    }
}

#[test]
fn duplicates_are_rejected() {
    let e = parse_err(&Raw::header(3, 0, 2).kv_u32("a", 1).kv_u32("a", 2).0);
    assert_eq!(e.to_string(), "metadata key \"a\" appears more than once");
    let e = parse_err(
        &Raw::header(3, 2, 0)
            .tensor_info("w", &[1], F32, 0)
            .tensor_info("w", &[1], F32, 32)
            .pad(32)
            .zeros(64)
            .0,
    );
    assert_eq!(e.to_string(), "tensor \"w\" appears more than once");
}

/// A file with one tensor info and enough zero bytes after it for most data sizes.
fn one_tensor(dims: &[u64], type_id: u32, offset: u64) -> Vec<u8> {
    Raw::header(3, 1, 0)
        .tensor_info("blk.0.w", dims, type_id, offset)
        .pad(32)
        .zeros(256)
        .0
}

#[test]
fn unknown_ggml_type_names_tensor_and_id() {
    for id in [4u32, 31, 99, u32::MAX] {
        let e = parse_err(&one_tensor(&[4], id, 0));
        assert!(
            matches!(e, FormatError::UnknownGgmlType { ref tensor, type_id } if tensor == "blk.0.w" && type_id == id),
            "{e:?}"
        );
    }
    let e = parse_err(&one_tensor(&[4], 4, 0));
    assert_eq!(
        e.to_string(),
        "tensor \"blk.0.w\" has unknown ggml type id 4"
    );
}

#[test]
fn too_many_dims() {
    let e = parse_err(&one_tensor(&[1, 1, 1, 1, 1], F32, 0));
    assert_eq!(
        e.to_string(),
        "tensor \"blk.0.w\" has 5 dimensions; at most 4 are allowed"
    );
    let e = parse_err(&Raw::header(3, 1, 0).str("x").u32(u32::MAX).zeros(64).0);
    assert!(
        matches!(
            e,
            FormatError::TooManyDims {
                n_dims: u32::MAX,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn size_overflow_is_checked() {
    for dims in [
        vec![1u64 << 32, 1 << 32], // 2^64 elements
        vec![1u64 << 62, 2],       // 2^63 elements: beyond ggml's i64
        vec![1u64 << 63],          // one dimension beyond i64
        vec![u64::MAX, 0],         // a zero does not excuse a dimension beyond i64
        vec![1 << 20, 1 << 20, 1 << 20, 1 << 20],
    ] {
        let e = parse_err(&one_tensor(&dims, F32, 0));
        assert!(
            matches!(e, FormatError::SizeOverflow { .. }),
            "{dims:?}: {e:?}"
        );
    }
    // Elements fit in i64 but bytes do not fit in u64 (8 bytes each).
    let e = parse_err(&one_tensor(&[1 << 61], 28, 0));
    assert!(matches!(e, FormatError::SizeOverflow { .. }), "{e:?}");
    assert!(e.to_string().contains("overflows"), "{e}");
}

#[test]
fn zero_sized_dims_give_an_empty_tensor() {
    let max = i64::MAX as u64;
    let h = GgufHeader::parse(&one_tensor(&[0, max, max], F32, 0)).unwrap();
    assert_eq!((h.tensors[0].n_bytes, h.tensors[0].n_elements()), (0, 0));
    let h = GgufHeader::parse(&one_tensor(&[32, 0], Q4_1, 0)).unwrap();
    assert_eq!(h.tensors[0].n_bytes, 0);
}

#[test]
fn rows_must_be_whole_blocks() {
    let e = parse_err(&one_tensor(&[33, 2], Q4_1, 0));
    assert_eq!(
        e.to_string(),
        "tensor \"blk.0.w\": ne[0] = 33 is not a multiple of the Q4_1 block size 32"
    );
}

#[test]
fn alignment_must_be_a_power_of_two() {
    for bad in [0u32, 3, 48] {
        let e = parse_err(&Raw::header(3, 0, 1).kv_u32("general.alignment", bad).0);
        assert!(
            matches!(e, FormatError::BadAlignment { alignment } if alignment == u64::from(bad))
        );
    }
    let e = parse_err(&Raw::header(3, 0, 1).kv_u32("general.alignment", 0).0);
    assert_eq!(
        e.to_string(),
        "general.alignment = 0 is invalid: it must be a non-zero power of two"
    );

    let e = parse_err(
        &Raw::header(3, 0, 1)
            .str("general.alignment")
            .u32(8)
            .str("32")
            .0,
    );
    assert_eq!(
        e.to_string(),
        "metadata key \"general.alignment\" has type STRING, expected an integer"
    );
    let e = parse_err(
        &Raw::header(3, 0, 1)
            .str("general.alignment")
            .u32(5)
            .u32(-32i32 as u32)
            .0,
    );
    assert!(matches!(e, FormatError::ValueOutOfRange { .. }), "{e:?}");

    // Any integer width is accepted, as in files that store it as u64.
    let bytes = Raw::header(3, 0, 1)
        .str("general.alignment")
        .u32(10)
        .u64(64)
        .pad(64)
        .0;
    assert_eq!(GgufHeader::parse(&bytes).unwrap().alignment, 64);
}

#[test]
fn misaligned_tensor_offset() {
    let e = parse_err(&one_tensor(&[4], F32, 16));
    assert_eq!(
        e.to_string(),
        "tensor \"blk.0.w\": data offset 16 is not a multiple of the alignment 32"
    );
}

#[test]
fn tensor_data_past_the_end_names_the_tensor() {
    let bytes = Raw::header(3, 1, 0)
        .tensor_info("output.weight", &[8], F32, 0)
        .pad(32)
        .zeros(16)
        .0;
    let e = parse_err(&bytes);
    assert_eq!(
        e.to_string(),
        "tensor \"output.weight\": data at byte offsets 96..128 runs past the end of the file \
         (112 bytes)"
    );
    // Offsets near u64::MAX must not overflow.
    let e = parse_err(&one_tensor(&[4], F32, u64::MAX - 31));
    assert!(matches!(e, FormatError::TensorOutOfBounds { .. }), "{e:?}");
}

#[test]
fn data_section_must_start_inside_the_file() {
    // Found by fuzzing: a 256-byte file without tensors declaring a 1 GiB alignment parsed,
    // with its data section a gigabyte past its end (and writing it back took a gigabyte).
    let bytes = Raw::header(3, 0, 1)
        .kv_u32("general.alignment", 1 << 30)
        .pad(64)
        .0;
    let e = parse_err(&bytes);
    assert_eq!(
        e.to_string(),
        "truncated file: padding before the data section at byte offset 57 needs 1073741767 \
         bytes but only 7 remain"
    );
    // The fuzzer's own input.
    let artifact = std::fs::read(common::data_path("fuzz/huge_alignment_no_tensors.gguf")).unwrap();
    assert!(
        matches!(parse_err(&artifact), FormatError::Truncated { ref what, .. } if what == "padding before the data section")
    );
    // Without padding the data section would start after the end: also cut short.
    let e = parse_err(&Raw::header(3, 0, 1).kv_u32("a", 1).0);
    assert!(
        matches!(
            e,
            FormatError::Truncated {
                needed: 23,
                available: 0,
                ..
            }
        ),
        "{e:?}"
    );
}

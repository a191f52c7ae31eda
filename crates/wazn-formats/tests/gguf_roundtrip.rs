//! Files written by [`GgufWriter`] read back as written, through both the slice parser and
//! the memory-mapped file.

mod common;

use common::Raw;
use wazn_formats::{
    FormatError, GgmlType, GgufFile, GgufHeader, GgufWriter, MetaArray, MetaValue, ValueType,
};

/// Four f32 values 0..4 as bytes.
fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn every_value_type() -> Vec<(&'static str, MetaValue)> {
    vec![
        ("general.architecture", MetaValue::from("llama")),
        ("t.u8", MetaValue::U8(255)),
        ("t.i8", MetaValue::I8(-128)),
        ("t.u16", MetaValue::U16(65535)),
        ("t.i16", MetaValue::I16(-32768)),
        ("t.u32", MetaValue::U32(u32::MAX)),
        ("t.i32", MetaValue::I32(i32::MIN)),
        ("t.f32", MetaValue::F32(-0.1)),
        ("t.bool", MetaValue::Bool(true)),
        ("t.string", MetaValue::from("naïve 漢字 🙂")),
        ("t.u64", MetaValue::U64(u64::MAX)),
        ("t.i64", MetaValue::I64(i64::MIN)),
        ("t.f64", MetaValue::F64(std::f64::consts::E)),
        ("t.strings", MetaValue::from(vec!["", "a", "bc"])),
        ("t.bools", MetaValue::from(vec![true, false])),
        ("t.f64s", MetaValue::from(vec![0.5f64, -1e300])),
        ("t.empty", MetaValue::Array(MetaArray::empty(ValueType::U8))),
        (
            "t.empty_strings",
            MetaValue::Array(MetaArray::empty(ValueType::String)),
        ),
        (
            "t.nested",
            MetaValue::from(vec![
                MetaArray::from(vec![1u16, 2]),
                MetaArray::empty(ValueType::I64),
                MetaArray::from(vec![3u16]),
                MetaArray::from(vec!["inner arrays may differ in type"]),
            ]),
        ),
    ]
}

#[test]
fn metadata_of_every_type_round_trips_in_order() {
    let mut w = GgufWriter::new();
    for (k, v) in every_value_type() {
        w = w.metadata(k, v);
    }
    let bytes = w.to_bytes().unwrap();
    let header = GgufHeader::parse(&bytes).unwrap();
    assert_eq!(header.version, 3);
    assert_eq!(header.alignment, 32);
    assert!(header.tensors.is_empty());
    let got: Vec<(&str, &MetaValue)> = header.metadata.iter().collect();
    let want = every_value_type();
    assert_eq!(got.len(), want.len());
    for ((gk, gv), (wk, wv)) in got.iter().zip(&want) {
        assert_eq!(gk, wk);
        assert_eq!(*gv, wv, "{wk}");
    }
    // The data section starts aligned even with no tensors.
    assert_eq!(header.data_offset % 32, 0);
    assert_eq!(header.data_offset, bytes.len() as u64);
}

#[test]
fn a_file_rewritten_from_what_was_read_is_byte_identical() {
    let mut w = GgufWriter::new();
    for (k, v) in every_value_type() {
        w = w.metadata(k, v);
    }
    let bytes = w.to_bytes().unwrap();
    let header = GgufHeader::parse(&bytes).unwrap();
    let mut again = GgufWriter::new();
    for (k, v) in header.metadata.iter() {
        again = again.metadata(k, v.clone());
    }
    assert_eq!(again.to_bytes().unwrap(), bytes);
    // An empty array keeps the element type written for it.
    let empty = header.metadata.get("t.empty_strings").unwrap();
    assert_eq!(
        empty.as_array().map(MetaArray::element_type),
        Some(ValueType::String)
    );
}

#[test]
fn tensors_round_trip_with_custom_alignment_and_version_2() {
    let q4_1_block = [7u8; 20];
    let bytes = GgufWriter::new()
        .version(2)
        .metadata("general.alignment", 128u32)
        .tensor("a", GgmlType::F32, &[3], f32_bytes(&[1.0, 2.0, 3.0]))
        .tensor(
            "b",
            GgmlType::Q4_1,
            &[32, 2],
            [q4_1_block, q4_1_block].concat(),
        )
        .tensor("scalar", GgmlType::F32, &[], f32_bytes(&[9.0]))
        .tensor("empty", GgmlType::F16, &[0, 5], Vec::new())
        .to_bytes()
        .unwrap();
    let h = GgufHeader::parse(&bytes).unwrap();
    assert_eq!((h.version, h.alignment), (2, 128));
    assert_eq!(h.data_offset % 128, 0);
    let names: Vec<&str> = h.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "scalar", "empty"]);

    let a = h.tensor("a").unwrap();
    assert_eq!(
        (a.ggml_type, a.dims.as_slice(), a.n_bytes),
        (GgmlType::F32, &[3u64][..], 12)
    );
    assert_eq!((a.n_elements(), a.n_rows(), a.row_len()), (3, 1, 3));
    assert_eq!(
        &bytes[a.offset as usize..][..12],
        &f32_bytes(&[1.0, 2.0, 3.0])[..]
    );

    let b = h.tensor("b").unwrap();
    assert_eq!(
        (b.n_elements(), b.n_rows(), b.row_len(), b.row_bytes()),
        (64, 2, 32, 20)
    );
    assert_eq!(b.n_bytes, 40);
    assert_eq!(b.offset % 128, 0);
    assert_eq!(&bytes[b.offset as usize..][..40], &[7u8; 40][..]);

    let scalar = h.tensor("scalar").unwrap();
    assert_eq!(
        (scalar.n_elements(), scalar.row_len(), scalar.n_bytes),
        (1, 1, 4)
    );

    let empty = h.tensor("empty").unwrap();
    assert_eq!((empty.n_elements(), empty.n_bytes), (0, 0));
}

#[test]
fn file_api_reads_what_was_written() {
    let dir = std::env::temp_dir().join(format!("wazn-formats-rt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.gguf");
    GgufWriter::new()
        .metadata("general.architecture", "tiny")
        .metadata("tiny.block_count", 2u64)
        .tensor(
            "w",
            GgmlType::F32,
            &[2, 2],
            f32_bytes(&[1.0, 2.0, 3.0, 4.0]),
        )
        .write_file(&path)
        .unwrap();

    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.path(), path.as_path());
    assert_eq!(f.file_size(), std::fs::metadata(&path).unwrap().len());
    assert_eq!(f.version(), 3);
    assert_eq!(f.architecture().unwrap(), "tiny");
    assert_eq!(f.metadata().require_u64("tiny.block_count").unwrap(), 2);
    let (t, data) = f.tensor_bytes("w").unwrap();
    assert_eq!(t.dims, [2, 2]);
    assert_eq!(data, &f32_bytes(&[1.0, 2.0, 3.0, 4.0])[..]);
    assert_eq!(f.tensor("w"), Some(t));
    assert_eq!(f.tensors().len(), 1);

    let e = f.tensor_bytes("missing").unwrap_err();
    assert!(matches!(e, FormatError::TensorNotFound { ref name } if name == "missing"));
    assert_eq!(e.to_string(), "no tensor named \"missing\"");

    // A TensorInfo that does not belong to this file gives no bytes rather than a panic.
    let mut foreign = t.clone();
    foreign.offset = u64::MAX - 2;
    assert!(f.tensor_data(&foreign).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn architecture_missing_is_a_missing_key_error() {
    let bytes = GgufWriter::new().to_bytes().unwrap();
    let h = GgufHeader::parse(&bytes).unwrap();
    let e = h.metadata.require_str("general.architecture").unwrap_err();
    assert_eq!(
        e.to_string(),
        "metadata key \"general.architecture\" is missing"
    );
}

/// `levels` arrays, each holding the next, around one u8.
fn nested(levels: usize) -> MetaArray {
    let mut a = MetaArray::from(vec![42u8]);
    for _ in 1..levels {
        a = MetaArray::from(vec![a]);
    }
    a
}

#[test]
fn arrays_nest_as_deep_as_the_reader_allows() {
    let deepest = nested(wazn_formats::MAX_ARRAY_DEPTH);
    let bytes = GgufWriter::new()
        .metadata("deep", deepest.clone())
        .to_bytes()
        .unwrap();
    let h = GgufHeader::parse(&bytes).unwrap();
    assert_eq!(h.metadata.get("deep"), Some(&MetaValue::Array(deepest)));
}

#[test]
fn writer_rejects_what_gguf_cannot_hold() {
    let cases: Vec<(GgufWriter, &str)> = vec![
        (
            GgufWriter::new().metadata("deep", nested(wazn_formats::MAX_ARRAY_DEPTH + 1)),
            "metadata key \"deep\" nests arrays deeper than 8 levels",
        ),
        (
            GgufWriter::new().tensor("w", GgmlType::F32, &[3], vec![0u8; 8]),
            "tensor \"w\" is F32 [3] which takes 12 bytes, but 8 were given",
        ),
        (
            GgufWriter::new().metadata("k", 1u8).metadata("k", 2u8),
            "metadata key \"k\" appears more than once",
        ),
        (
            GgufWriter::new()
                .tensor("w", GgmlType::F32, &[1], vec![0u8; 4])
                .tensor("w", GgmlType::F32, &[1], vec![0u8; 4]),
            "tensor \"w\" appears more than once",
        ),
        (
            GgufWriter::new().metadata("general.alignment", 24u32),
            "general.alignment = 24 is invalid",
        ),
        (GgufWriter::new().version(1), "version 1"),
        (
            GgufWriter::new().tensor("q", GgmlType::Q4_0, &[16], vec![0u8; 9]),
            "ne[0] = 16 is not a multiple of the Q4_0 block size 32",
        ),
        (
            GgufWriter::new().tensor("d", GgmlType::F32, &[1, 1, 1, 1, 1], vec![0u8; 4]),
            "has 5 dimensions",
        ),
    ];
    for (writer, message) in cases {
        let e = writer.to_bytes().unwrap_err().to_string();
        assert!(e.contains(message), "{e:?} should contain {message:?}");
    }
}

/// Two tensor infos pointing at the same bytes: llama.cpp would refuse (it wants sequential
/// offsets), this reader allows it since views are read-only and in bounds.
#[test]
fn overlapping_tensors_are_tolerated() {
    let bytes = Raw::header(3, 2, 0)
        .tensor_info("a", &[4], 0, 0)
        .tensor_info("b", &[2], 0, 0)
        .pad(32)
        .bytes(&f32_bytes(&[1.0, 2.0, 3.0, 4.0]))
        .0;
    let h = GgufHeader::parse(&bytes).unwrap();
    assert_eq!(h.tensors[0].offset, h.tensors[1].offset);
    assert_eq!((h.tensors[0].n_bytes, h.tensors[1].n_bytes), (16, 8));
}

//! The two weight-file headers: GGUF and safetensors.

use wazn_formats::{GgufHeader, GgufWriter, MetaValue, Metadata, SafeHeader};

/// Parses arbitrary bytes as a GGUF file. Beyond "no panic", it checks the promises the parser
/// makes on success: every tensor lies inside the input, is aligned and has the size its type
/// and dims imply; every metadata value can be read through every getter and as JSON; and
/// writing the header back out and parsing that gives the same file again.
pub fn gguf_parse(data: &[u8]) {
    let Ok(header) = GgufHeader::parse(data) else {
        return;
    };

    let mut checksum = 0u8;
    for t in &header.tensors {
        let start = usize::try_from(t.offset).expect("offset fits in the input");
        let end = start + usize::try_from(t.n_bytes).expect("size fits in the input");
        checksum ^= data[start..end].iter().fold(0, |acc, b| acc ^ b);
        assert_eq!(t.offset % header.alignment, 0, "{}", t.name);
        let row_bytes = t.ggml_type.row_bytes(t.row_len()).expect("whole blocks");
        assert_eq!(t.n_bytes, row_bytes * t.n_rows(), "{}", t.name);
        assert!(t.dims.len() <= 4);
    }
    std::hint::black_box(checksum);

    for (key, value) in header.metadata.iter() {
        touch(value);
        touch_getters(&header.metadata, key);
    }
    serde_json::to_string(&header.metadata).expect("metadata serializes");

    let written = rewrite(&header, data);
    let again = GgufHeader::parse(&written).expect("a written file parses");
    assert_eq!(again.tensors.len(), header.tensors.len());
    for (a, b) in again.tensors.iter().zip(&header.tensors) {
        assert_eq!(
            (&a.name, a.ggml_type, &a.dims, a.n_bytes),
            (&b.name, b.ggml_type, &b.dims, b.n_bytes)
        );
    }
    // Values compare through their bytes, since NaN != NaN.
    assert_eq!(rewrite(&again, &written), written, "rewrite is not stable");
}

/// The file a `GgufWriter` makes from `header` and the tensor bytes in `data`.
fn rewrite(header: &GgufHeader, data: &[u8]) -> Vec<u8> {
    let mut w = GgufWriter::new().version(header.version);
    for (key, value) in header.metadata.iter() {
        w = w.metadata(key, value.clone());
    }
    for t in &header.tensors {
        let start = t.offset as usize;
        w = w.tensor(
            &t.name,
            t.ggml_type,
            &t.dims,
            &data[start..start + t.n_bytes as usize],
        );
    }
    w.to_bytes().expect("a parsed header can be written")
}

fn touch(value: &MetaValue) {
    std::hint::black_box((
        value.type_name(),
        value.as_u64(),
        value.as_i64(),
        value.as_f32(),
        value.as_f64(),
        value.as_bool(),
        value.as_str().map(str::len),
    ));
    if let Some(items) = value.as_array() {
        items.iter().for_each(|item| touch(&item));
        std::hint::black_box((items.element_type(), items.describe(), items.heap_bytes()));
    }
}

fn touch_getters(m: &Metadata, key: &str) {
    let _ = std::hint::black_box(m.get_str(key).map(|s| s.map(str::len)));
    let _ = std::hint::black_box(m.get_u64(key));
    let _ = std::hint::black_box(m.get_u32(key));
    let _ = std::hint::black_box(m.get_i64(key));
    let _ = std::hint::black_box(m.get_f32(key));
    let _ = std::hint::black_box(m.get_bool(key));
    let _ = std::hint::black_box(m.get_str_array(key).map(|v| v.map(|v| v.len())));
    let _ = std::hint::black_box(m.get_i32_array(key));
    let _ = std::hint::black_box(m.get_f32_array(key));
    let _ = std::hint::black_box(m.require_u64(key).map_err(|e| e.to_string()));
}

/// Parses arbitrary bytes as a safetensors file. On success every tensor's byte range lies
/// inside the input, after the header, holds exactly its shape's elements of its dtype, and
/// overlaps no other tensor's.
pub fn safetensors_header(data: &[u8]) {
    let Ok(header) = SafeHeader::parse(data) else {
        return;
    };
    let header_end = 8 + u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
    let mut previous_end = header_end;
    for t in &header.tensors {
        assert!(
            t.file_start >= header_end,
            "{} starts in the header",
            t.name
        );
        assert!(t.file_start <= t.file_end, "{}", t.name);
        assert!(
            t.file_end <= data.len() as u64,
            "{} runs past the file",
            t.name
        );
        let n_bytes = t.n_elements().checked_mul(t.dtype.size_bytes());
        assert_eq!(n_bytes, Some(t.file_end - t.file_start), "{}", t.name);
        if t.file_start < t.file_end {
            assert!(
                t.file_start >= previous_end,
                "{} overlaps another tensor",
                t.name
            );
            previous_end = t.file_end;
        }
        let bytes = &data[t.file_start as usize..t.file_end as usize];
        std::hint::black_box(bytes.iter().fold(0u8, |acc, b| acc ^ b));
    }
    std::hint::black_box(header.metadata.len());
}

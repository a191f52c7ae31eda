//! Helpers shared by the integration tests: where the default model lives, comparing a parsed
//! file with the facts gguf-py recorded (tests/gen_gguf_facts.py), and a raw byte builder
//! for malformed files that no correct writer would produce.

#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;
use wazn_formats::{GgufHeader, MetaArray, MetaValue};

pub const DEFAULT_MODEL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The default model's path, found as scripts/fetch-default-model puts it.
pub fn default_model_path() -> PathBuf {
    wazn_formats::model_cache::default_model_path().unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL))
}

pub fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("data")
        .join(name)
}

pub fn load_json(name: &str) -> Value {
    let text = std::fs::read_to_string(data_path(name)).expect("committed test data");
    serde_json::from_str(&text).expect("valid JSON")
}

/// gguf-py's type chain: "ARRAY" then the element's chain, taken from the first element (an
/// empty array's chain stops at "ARRAY").
fn type_chain(v: &MetaValue) -> Vec<String> {
    match v.as_array() {
        Some(items) => array_type_chain(items),
        None => vec![v.type_name().to_string()],
    }
}

fn array_type_chain(items: &MetaArray) -> Vec<String> {
    let mut chain = vec!["ARRAY".to_string()];
    match items {
        MetaArray::Array(inner) => {
            if let Some(first) = inner.first() {
                chain.extend(array_type_chain(first));
            }
        }
        scalars if !scalars.is_empty() => chain.push(scalars.element_type().name().to_string()),
        _ => {}
    }
    chain
}

/// Scalar leaves in order, nested arrays flattened (as gguf-py's `contents()` does).
fn leaves(items: &MetaArray, out: &mut Vec<MetaValue>) {
    match items {
        MetaArray::Array(inner) => inner.iter().for_each(|a| leaves(a, out)),
        scalars => out.extend(scalars.iter()),
    }
}

/// The little-endian bytes of a scalar as stored in the file.
fn raw_bytes(v: &MetaValue) -> Vec<u8> {
    match v {
        MetaValue::U8(x) => vec![*x],
        MetaValue::I8(x) => x.to_le_bytes().to_vec(),
        MetaValue::U16(x) => x.to_le_bytes().to_vec(),
        MetaValue::I16(x) => x.to_le_bytes().to_vec(),
        MetaValue::U32(x) => x.to_le_bytes().to_vec(),
        MetaValue::I32(x) => x.to_le_bytes().to_vec(),
        MetaValue::F32(x) => x.to_le_bytes().to_vec(),
        MetaValue::Bool(x) => vec![u8::from(*x)],
        MetaValue::String(s) => s.as_bytes().to_vec(),
        MetaValue::U64(x) => x.to_le_bytes().to_vec(),
        MetaValue::I64(x) => x.to_le_bytes().to_vec(),
        MetaValue::F64(x) => x.to_le_bytes().to_vec(),
        MetaValue::Array(_) => panic!("not a scalar"),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares one scalar with its JSON form from gguf-py. Floats compare as f32/f64 after
/// rounding the JSON double, integers, strings and bools exactly.
pub fn assert_scalar_eq(key: &str, v: &MetaValue, expected: &Value) {
    match v {
        MetaValue::F32(x) => {
            let e = expected
                .as_f64()
                .unwrap_or_else(|| panic!("{key}: {expected}"));
            assert_eq!(*x, e as f32, "{key}");
        }
        MetaValue::F64(x) => {
            let e = expected
                .as_f64()
                .unwrap_or_else(|| panic!("{key}: {expected}"));
            assert_eq!(*x, e, "{key}");
        }
        other => {
            let got = serde_json::to_value(other).expect("serializable");
            assert_eq!(&got, expected, "{key}");
        }
    }
}

/// Asserts that `header` (of the file `bytes`) says what gguf-py said in `facts`.
pub fn assert_matches_facts(header: &GgufHeader, bytes: &[u8], facts: &Value) {
    assert_eq!(bytes.len() as u64, facts["file_size"].as_u64().unwrap());
    assert_eq!(
        u64::from(header.version),
        facts["version"].as_u64().unwrap()
    );
    assert_eq!(header.alignment, facts["alignment"].as_u64().unwrap());
    assert_eq!(header.data_offset, facts["data_offset"].as_u64().unwrap());
    assert_eq!(
        header.metadata.len() as u64,
        facts["kv_count"].as_u64().unwrap()
    );
    assert_eq!(
        header.tensors.len() as u64,
        facts["tensor_count"].as_u64().unwrap()
    );

    let expected_meta = facts["metadata"].as_array().unwrap();
    assert_eq!(header.metadata.len(), expected_meta.len());
    for ((key, value), e) in header.metadata.iter().zip(expected_meta) {
        assert_eq!(key, e["key"].as_str().unwrap(), "metadata order");
        let chain: Vec<String> = serde_json::from_value(e["types"].clone()).unwrap();
        assert_eq!(type_chain(value), chain, "{key}");
        match value.as_array() {
            Some(items) => {
                assert_eq!(items.len() as u64, e["len"].as_u64().unwrap(), "{key}");
                let mut flat = Vec::new();
                leaves(items, &mut flat);
                assert_eq!(flat.len() as u64, e["n_leaves"].as_u64().unwrap(), "{key}");
                let head = e["head"].as_array().unwrap();
                assert_eq!(head.len(), flat.len().min(5), "{key}");
                for (got, want) in flat.iter().zip(head) {
                    assert_scalar_eq(key, got, want);
                }
                if let Some(last) = flat.last() {
                    assert_scalar_eq(key, last, &e["last"]);
                }
            }
            None => {
                assert_scalar_eq(key, value, &e["value"]);
                assert_eq!(
                    hex(&raw_bytes(value)),
                    e["raw_hex"].as_str().unwrap(),
                    "{key}"
                );
            }
        }
    }

    let expected_tensors = facts["tensors"].as_array().unwrap();
    assert_eq!(header.tensors.len(), expected_tensors.len());
    for (t, e) in header.tensors.iter().zip(expected_tensors) {
        let name = e["name"].as_str().unwrap();
        assert_eq!(t.name, name);
        assert_eq!(
            u64::from(t.ggml_type.id()),
            e["type_id"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            t.ggml_type.name(),
            e["type_name"].as_str().unwrap(),
            "{name}"
        );
        let shape: Vec<u64> = serde_json::from_value(e["shape"].clone()).unwrap();
        assert_eq!(t.dims, shape, "{name}");
        assert_eq!(t.n_elements(), e["n_elements"].as_u64().unwrap(), "{name}");
        assert_eq!(t.offset, e["data_offset"].as_u64().unwrap(), "{name}");
        assert_eq!(t.n_bytes, e["n_bytes"].as_u64().unwrap(), "{name}");
        let data = &bytes[t.offset as usize..(t.offset + t.n_bytes) as usize];
        assert_eq!(
            hex(&data[..data.len().min(16)]),
            e["head_hex"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            hex(&data[data.len().saturating_sub(16)..]),
            e["tail_hex"].as_str().unwrap(),
            "{name}"
        );
    }
}

/// Little-endian bytes of a (possibly malformed) GGUF file, field by field.
#[derive(Default, Clone)]
pub struct Raw(pub Vec<u8>);

impl Raw {
    /// Magic, version and the two counts.
    pub fn header(version: u32, tensor_count: u64, kv_count: u64) -> Raw {
        Raw::default()
            .bytes(b"GGUF")
            .u32(version)
            .u64(tensor_count)
            .u64(kv_count)
    }

    pub fn bytes(mut self, b: &[u8]) -> Raw {
        self.0.extend_from_slice(b);
        self
    }

    pub fn u8(self, v: u8) -> Raw {
        self.bytes(&[v])
    }

    pub fn u32(self, v: u32) -> Raw {
        self.bytes(&v.to_le_bytes())
    }

    pub fn u64(self, v: u64) -> Raw {
        self.bytes(&v.to_le_bytes())
    }

    /// A GGUF string: u64 length then the bytes.
    pub fn str(self, s: &str) -> Raw {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }

    /// A metadata entry with a u32 value.
    pub fn kv_u32(self, key: &str, v: u32) -> Raw {
        self.str(key).u32(4).u32(v)
    }

    /// A tensor info: name, dims, ggml type id, offset relative to the data section.
    pub fn tensor_info(self, name: &str, dims: &[u64], type_id: u32, offset: u64) -> Raw {
        let mut r = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            r = r.u64(d);
        }
        r.u32(type_id).u64(offset)
    }

    /// Zero padding up to a multiple of `alignment`.
    pub fn pad(mut self, alignment: usize) -> Raw {
        while !self.0.len().is_multiple_of(alignment) {
            self.0.push(0);
        }
        self
    }

    pub fn zeros(mut self, n: usize) -> Raw {
        self.0.resize(self.0.len() + n, 0);
        self
    }
}

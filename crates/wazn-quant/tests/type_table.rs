//! wazn's tensor types against llama-quantize's, for synthetic models of real shapes: the
//! table in data/llama_quantize_types.json was read from `llama-quantize --dry-run` by
//! bench/quant-type-table (which says how), and every case of it must come out the same.

use serde::Deserialize;
use wazn_formats::{GgmlType, MetaValue, Metadata};
use wazn_quant::{choose_types, llama_order, FileType, MixOptions, ModelShape, TensorDesc};

#[derive(Deserialize)]
struct Table {
    models: Vec<Model>,
}

#[derive(Deserialize)]
struct Model {
    name: String,
    metadata: serde_json::Map<String, serde_json::Value>,
    /// "name TYPE ne0xne1", in llama-quantize's order.
    tensors: Vec<String>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    file_type: String,
    flags: Vec<String>,
    /// One type per tensor, space-separated.
    types: String,
}

fn table() -> Table {
    let text = include_str!("data/llama_quantize_types.json");
    serde_json::from_str(text).expect("the table parses")
}

/// The metadata as the synthetic file had it: integers u32, reals f32.
fn metadata(json: &serde_json::Map<String, serde_json::Value>) -> Metadata {
    let mut metadata = Metadata::new();
    for (key, value) in json {
        let value = match value {
            serde_json::Value::String(s) => MetaValue::from(s.as_str()),
            serde_json::Value::Number(n) => match n.as_u64() {
                Some(u) => MetaValue::U32(u32::try_from(u).unwrap()),
                None => MetaValue::F32(n.as_f64().unwrap() as f32),
            },
            other => panic!("{key}: unexpected {other}"),
        };
        metadata.insert(key.clone(), value).unwrap();
    }
    metadata
}

fn tensor(line: &str) -> TensorDesc {
    let mut parts = line.split(' ');
    let (name, ggml_type, dims) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    TensorDesc {
        name: name.to_string(),
        ggml_type: GgmlType::from_name(ggml_type).unwrap(),
        dims: dims.split('x').map(|d| d.parse().unwrap()).collect(),
    }
}

fn options(case: &Case) -> MixOptions {
    let mut options = MixOptions::new(FileType::parse(&case.file_type).unwrap());
    let mut flags = case.flags.iter();
    while let Some(flag) = flags.next() {
        let mut type_arg = || GgmlType::from_name(flags.next().unwrap()).unwrap();
        match flag.as_str() {
            "--pure" => options.pure = true,
            "--leave-output-tensor" => options.quantize_output_tensor = false,
            "--output-tensor-type" => options.output_tensor_type = Some(type_arg()),
            "--token-embedding-type" => options.token_embedding_type = Some(type_arg()),
            other => panic!("unknown flag {other}"),
        }
    }
    options
}

#[test]
fn tensors_sort_in_llama_quantizes_order() {
    for model in table().models {
        let mut names: Vec<&str> = model
            .tensors
            .iter()
            .rev()
            .map(|t| t.split(' ').next().unwrap())
            .collect();
        names.sort_by(|a, b| llama_order(a, b));
        let expected: Vec<&str> = model
            .tensors
            .iter()
            .map(|t| t.split(' ').next().unwrap())
            .collect();
        assert_eq!(names, expected, "{}", model.name);
    }
}

#[test]
fn every_case_gets_llama_quantizes_types() {
    let table = table();
    let mut n_cases = 0;
    for model in &table.models {
        let shape = ModelShape::from_metadata(&metadata(&model.metadata)).unwrap();
        let tensors: Vec<TensorDesc> = model.tensors.iter().map(|t| tensor(t)).collect();
        for case in &model.cases {
            let (types, _) = choose_types(&shape, &tensors, &options(case)).unwrap();
            let expected: Vec<&str> = case.types.split(' ').collect();
            assert_eq!(expected.len(), tensors.len());
            let wrong: Vec<String> = tensors
                .iter()
                .zip(types.iter().zip(&expected))
                .filter(|(_, (got, want))| !got.name().eq_ignore_ascii_case(want))
                .map(|(t, (got, want))| format!("{}: {got}, llama-quantize {want}", t.name))
                .collect();
            assert!(
                wrong.is_empty(),
                "{} {} {:?}: {} of {} differ, first: {:?}",
                model.name,
                case.file_type,
                case.flags,
                wrong.len(),
                tensors.len(),
                &wrong[..wrong.len().min(5)]
            );
            n_cases += 1;
        }
    }
    assert_eq!(n_cases, 75, "the table has 75 cases");
}

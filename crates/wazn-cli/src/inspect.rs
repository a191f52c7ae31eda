//! `wazn inspect`: what a GGUF file or a Hugging Face model folder holds.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde::{Serialize, Serializer};
use serde_json::json;
use wazn_formats::{GgufFile, HfFolder, MetaArray, MetaValue};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The GGUF file or Hugging Face model folder.
    pub file: PathBuf,
    /// Print one JSON object with every metadata value and tensor.
    #[arg(long)]
    pub json: bool,
}

/// Arrays longer than this are shortened in the table (not in --json).
const ARRAY_PREVIEW: usize = 8;

/// Prints what `args.file` holds. Output goes through one locked, buffered stdout, and a
/// write error (a closed pipe: `wazn inspect M | head`) ends the command as an error that
/// `main` recognizes, never a panic.
pub fn inspect(args: InspectArgs) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.file.is_dir() {
        let folder = HfFolder::open(&args.file)?;
        if args.json {
            print_folder_json(&mut out, &folder)?;
        } else {
            print_folder_table(&mut out, &folder)?;
        }
    } else {
        let file = GgufFile::open(&args.file)?;
        if args.json {
            print_json(&mut out, &file)?;
        } else {
            print_table(&mut out, &file)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// One JSON document, written as it is serialized: a file's metadata arrays can be as large
/// as the file, and a `serde_json::Value` per element would cost many times that.
fn print_json(out: &mut impl Write, file: &GgufFile) -> Result<()> {
    let doc = GgufJson {
        path: file.path().display().to_string(),
        version: file.version(),
        file_size: file.file_size(),
        metadata: MetadataJson(file),
        tensors: file
            .tensors()
            .iter()
            .map(|t| TensorJson {
                name: &t.name,
                dtype: t.ggml_type.name(),
                shape: &t.dims,
                offset: t.offset,
                bytes: t.n_bytes,
            })
            .collect(),
    };
    // Through io::Error, so that a closed pipe is still recognized as one by `main`.
    serde_json::to_writer_pretty(&mut *out, &doc).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// The `--json` document of a GGUF file, its fields in output order.
#[derive(Serialize)]
struct GgufJson<'a> {
    path: String,
    version: u32,
    file_size: u64,
    metadata: MetadataJson<'a>,
    tensors: Vec<TensorJson<'a>>,
}

#[derive(Serialize)]
struct TensorJson<'a> {
    name: &'a str,
    dtype: &'a str,
    shape: &'a [u64],
    offset: u64,
    bytes: u64,
}

/// The metadata as an object in file order.
struct MetadataJson<'a>(&'a GgufFile);

impl Serialize for MetadataJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(
            self.0
                .metadata()
                .iter()
                .map(|(key, value)| (key, ValueJson(value))),
        )
    }
}

/// A metadata value written as it read when it went through a `serde_json::Value` first: a
/// FLOAT32 is widened to f64, as a `Value` holds it, so its digits stay what they were
/// (0.1f32 prints as 0.10000000149011612).
struct ValueJson<'a>(&'a MetaValue);

impl Serialize for ValueJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            MetaValue::F32(v) => serializer.serialize_f64(f64::from(*v)),
            MetaValue::Array(items) => ArrayJson(items).serialize(serializer),
            other => other.serialize(serializer),
        }
    }
}

/// An array as [`ValueJson`] writes values.
struct ArrayJson<'a>(&'a MetaArray);

impl Serialize for ArrayJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            MetaArray::F32(v) => serializer.collect_seq(v.iter().map(|&x| f64::from(x))),
            MetaArray::Array(inner) => serializer.collect_seq(inner.iter().map(ArrayJson)),
            other => other.serialize(serializer),
        }
    }
}

fn print_table(out: &mut impl Write, file: &GgufFile) -> Result<()> {
    let md = file.metadata();
    writeln!(
        out,
        "{}: GGUF v{}, {} metadata keys, {} tensors, {} bytes",
        file.path().display(),
        file.version(),
        md.len(),
        file.tensors().len(),
        file.file_size()
    )?;
    writeln!(out, "\nmetadata:")?;
    for (key, value) in md.iter() {
        writeln!(
            out,
            "  {key:<44} {:<8} {}",
            value.type_name(),
            preview(value)
        )?;
    }
    writeln!(out, "\ntensors:")?;
    writeln!(
        out,
        "  {:<36} {:<7} {:<22} {:>12}",
        "name", "dtype", "shape", "bytes"
    )?;
    for t in file.tensors() {
        let shape = format!("{:?}", t.dims);
        writeln!(
            out,
            "  {:<36} {:<7} {:<22} {:>12}",
            t.name,
            t.ggml_type.name(),
            shape,
            t.n_bytes
        )?;
    }
    Ok(())
}

fn print_folder_json(out: &mut impl Write, folder: &HfFolder) -> Result<()> {
    let tensors: Vec<_> = folder
        .shards()
        .iter()
        .flat_map(|shard| {
            shard.header().tensors.iter().map(move |t| {
                json!({
                    "name": t.name,
                    "dtype": t.dtype.name(),
                    "shape": t.shape,
                    "bytes": t.file_end.saturating_sub(t.file_start),
                    "file": shard.path().display().to_string(),
                })
            })
        })
        .collect();
    let doc = json!({
        "path": folder.dir().display().to_string(),
        "config": folder.config(),
        "tensors": tensors,
    });
    writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    Ok(())
}

fn print_folder_table(out: &mut impl Write, folder: &HfFolder) -> Result<()> {
    let shards = folder.shards();
    let n_tensors: usize = shards.iter().map(|s| s.header().tensors.len()).sum();
    writeln!(
        out,
        "{}: Hugging Face folder, model_type {}, {} safetensors file(s), {} tensors",
        folder.dir().display(),
        folder.model_type().unwrap_or("(none)"),
        shards.len(),
        n_tensors
    )?;
    writeln!(
        out,
        "
config.json:"
    )?;
    for line in serde_json::to_string_pretty(folder.config())?.lines() {
        writeln!(out, "  {line}")?;
    }
    writeln!(
        out,
        "
tensors:"
    )?;
    writeln!(
        out,
        "  {:<52} {:<5} {:<22} {:>12}",
        "name", "dtype", "shape", "bytes"
    )?;
    for t in shards.iter().flat_map(|s| s.header().tensors.iter()) {
        let shape = format!("{:?}", t.shape);
        writeln!(
            out,
            "  {:<52} {:<5} {:<22} {:>12}",
            t.name,
            t.dtype.name(),
            shape,
            t.file_end.saturating_sub(t.file_start)
        )?;
    }
    Ok(())
}

/// A value on one line: strings escaped and cut, arrays shortened.
fn preview(value: &MetaValue) -> String {
    match value {
        MetaValue::String(s) => {
            let escaped = format!("{s:?}");
            if escaped.chars().count() > 80 {
                format!(
                    "{}…\" ({} bytes)",
                    escaped.chars().take(78).collect::<String>(),
                    s.len()
                )
            } else {
                escaped
            }
        }
        MetaValue::Array(items) => preview_array(items),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// The first `ARRAY_PREVIEW` items of an array, and how many there are if that is not all.
fn preview_array(items: &MetaArray) -> String {
    let head: Vec<String> = match items {
        // Inner arrays are previewed in place: taking them as values would copy each whole.
        MetaArray::Array(inner) => inner
            .iter()
            .take(ARRAY_PREVIEW)
            .map(preview_array)
            .collect(),
        scalars => scalars
            .iter()
            .take(ARRAY_PREVIEW)
            .map(|v| preview(&v))
            .collect(),
    };
    if items.len() > ARRAY_PREVIEW {
        format!("[{}, …] ({} items)", head.join(", "), items.len())
    } else {
        format!("[{}]", head.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wazn_formats::{GgmlType, GgufWriter, ValueType};

    fn write_file(name: &str, writer: GgufWriter) -> GgufFile {
        let dir = std::env::temp_dir().join(format!("wazn-inspect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        writer.write_file(&path).unwrap();
        GgufFile::open(&path).unwrap()
    }

    /// The document as this command built it before writing it as it goes: through
    /// `serde_json::Value`s.
    fn through_values(file: &GgufFile) -> String {
        let metadata: serde_json::Map<String, serde_json::Value> = file
            .metadata()
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::to_value(v).unwrap()))
            .collect();
        let tensors: Vec<_> = file
            .tensors()
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "dtype": t.ggml_type.name(),
                    "shape": t.dims,
                    "offset": t.offset,
                    "bytes": t.n_bytes,
                })
            })
            .collect();
        let doc = json!({
            "path": file.path().display().to_string(),
            "version": file.version(),
            "file_size": file.file_size(),
            "metadata": metadata,
            "tensors": tensors,
        });
        format!("{}\n", serde_json::to_string_pretty(&doc).unwrap())
    }

    #[test]
    fn json_is_written_as_through_values() {
        let file = write_file(
            "every-type.gguf",
            GgufWriter::new()
                .metadata("z.first", "keys stay in file order")
                .metadata("f32", 0.1f32)
                .metadata("f32.nan", f32::NAN)
                .metadata("f64", 0.1f64)
                .metadata("i8", -5i8)
                .metadata("u64", u64::MAX)
                .metadata("bool", true)
                .metadata("f32s", vec![0.1f32, f32::INFINITY, -2.0])
                .metadata("bytes", vec![1u8, 2, 255])
                .metadata("strings", vec!["a", "\"quoted\"", ""])
                .metadata("empty", MetaArray::empty(ValueType::String))
                .metadata(
                    "nested",
                    vec![
                        MetaArray::from(vec![0.5f32]),
                        MetaArray::empty(ValueType::U8),
                        MetaArray::from(vec![-1i64]),
                    ],
                )
                .tensor("w", GgmlType::F32, &[2, 1], vec![0u8; 8]),
        );
        let mut out = Vec::new();
        print_json(&mut out, &file).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out, through_values(&file));
        assert!(out.contains("0.10000000149011612"), "{out}");
        std::fs::remove_file(file.path()).unwrap();
    }

    #[test]
    fn previews_shorten_arrays_at_every_depth() {
        let long = MetaArray::from((0..20u16).collect::<Vec<_>>());
        assert_eq!(
            preview(&MetaValue::Array(long.clone())),
            "[0, 1, 2, 3, 4, 5, 6, 7, …] (20 items)"
        );
        let nested = MetaValue::from(vec![long, MetaArray::from(vec!["a"])]);
        assert_eq!(
            preview(&nested),
            "[[0, 1, 2, 3, 4, 5, 6, 7, …] (20 items), [\"a\"]]"
        );
        assert_eq!(preview(&MetaValue::from(Vec::<bool>::new())), "[]");
    }
}

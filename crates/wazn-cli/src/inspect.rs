//! `wazn inspect`: what a GGUF file or a Hugging Face model folder holds.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde_json::json;
use wazn_formats::{GgufFile, HfFolder, MetaValue};

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

fn print_json(out: &mut impl Write, file: &GgufFile) -> Result<()> {
    let metadata: serde_json::Map<String, serde_json::Value> = file
        .metadata()
        .iter()
        .map(|(k, v)| Ok((k.to_string(), serde_json::to_value(v)?)))
        .collect::<Result<_, serde_json::Error>>()?;
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
    writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    Ok(())
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
        MetaValue::Array(items) if items.len() > ARRAY_PREVIEW => {
            let head: Vec<String> = items.iter().take(ARRAY_PREVIEW).map(preview).collect();
            format!("[{}, …] ({} items)", head.join(", "), items.len())
        }
        MetaValue::Array(items) => {
            let all: Vec<String> = items.iter().map(preview).collect();
            format!("[{}]", all.join(", "))
        }
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

//! The quantization run: plan the output, check that every conversion is possible, write the
//! header, then stream each tensor through the converter a slab of rows at a time.
//!
//! Memory stays at a slab's output and the tasks' scratch, whatever the model's size: the
//! input is mapped and each slab's pages are handed back once converted, and the output is
//! written as it is produced. The file is written under a temporary name beside the output
//! and renamed when complete, so a failed run leaves no half-written model behind.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use wazn_formats::{FormatError, GgmlType, GgufFile, GgufStreamWriter};
use wazn_kernels::ThreadPool;

use crate::convert::{can_dequantize, can_quantize, RowConversion};
use crate::error::QuantError;
use crate::plan::{PlannedTensor, QuantPlan};
use crate::type_choice::MixOptions;

/// Elements converted per slab (at least one row): the output buffer is at most this many
/// f32 (16 MiB), and far less for quantized types.
const SLAB_ELEMENTS: usize = 4 << 20;

/// Output buffered before each write to the file.
const WRITE_BUFFER_BYTES: usize = 4 << 20;

/// How a run is done.
#[derive(Clone, Copy, Debug)]
pub struct QuantizeOptions {
    pub mix: MixOptions,
    /// Dequantize already-quantized tensors to f32 and quantize them again.
    pub allow_requantize: bool,
    /// Threads that convert rows (at least 1).
    pub n_threads: usize,
}

/// Told about a run as it goes (for a progress bar); every method does nothing by default.
pub trait Progress: Sync {
    /// The plan is made and the header is written.
    fn begin(&self, _plan: &QuantPlan) {}
    /// Tensor `index` (of the plan's tensors) is next.
    fn tensor(&self, _index: usize, _tensor: &PlannedTensor) {}
    /// `input_bytes` more of the input's tensor data are done.
    fn advance(&self, _input_bytes: u64) {}
}

/// A [`Progress`] that shows nothing.
pub struct NoProgress;

impl Progress for NoProgress {}

/// What a finished run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuantizeSummary {
    pub n_tensors: usize,
    /// Tensors whose type changed.
    pub n_converted: usize,
    /// Tensors that fell back to another type for their row length.
    pub n_fallback: usize,
    /// Bytes of tensor data in the input and the output.
    pub input_data_bytes: u64,
    pub output_data_bytes: u64,
}

/// Quantizes the GGUF file `input` into `output` as `options` say.
pub fn quantize_file(
    input: &Path,
    output: &Path,
    options: &QuantizeOptions,
    progress: &dyn Progress,
) -> Result<QuantizeSummary, QuantError> {
    let file = GgufFile::open(input)?;
    if is_same_file(input, output) {
        return Err(QuantError::SameFile {
            path: output.to_path_buf(),
        });
    }
    let plan = QuantPlan::new(&file, &options.mix, options.allow_requantize)?;
    check_conversions(&plan)?;
    let pool = ThreadPool::new(options.n_threads).map_err(|error| QuantError::Threads {
        n_threads: options.n_threads,
        error,
    })?;

    let partial = partial_path(output);
    let result = write_output(&file, &plan, &pool, (&partial, output), progress);
    let result = result.and_then(|summary| {
        std::fs::rename(&partial, output).map_err(|error| QuantError::Write {
            path: output.to_path_buf(),
            error,
        })?;
        Ok(summary)
    });
    if result.is_err() {
        // Best effort: the partial file is useless, and the error says what went wrong.
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// Refuses a plan with a conversion wazn cannot do, before anything is written.
fn check_conversions(plan: &QuantPlan) -> Result<(), QuantError> {
    for t in plan.tensors.iter().filter(|t| t.is_converted()) {
        let tensor = || t.input.name.clone();
        if !can_dequantize(t.input.ggml_type) {
            return Err(QuantError::UnreadableType {
                tensor: tensor(),
                ggml_type: t.input.ggml_type,
            });
        }
        if !can_quantize(t.target) {
            return Err(QuantError::NoQuantizer {
                tensor: tensor(),
                ggml_type: t.target,
            });
        }
    }
    Ok(())
}

/// Writes the output at `partial`; errors name `output`, the file the user asked for.
fn write_output(
    file: &GgufFile,
    plan: &QuantPlan,
    pool: &ThreadPool,
    (partial, output): (&Path, &Path),
    progress: &dyn Progress,
) -> Result<QuantizeSummary, QuantError> {
    let write_error = |error| QuantError::Write {
        path: output.to_path_buf(),
        error,
    };
    let output_error = |error| QuantError::Output {
        path: output.to_path_buf(),
        error,
    };
    let out = BufWriter::with_capacity(
        WRITE_BUFFER_BYTES,
        File::create(partial).map_err(write_error)?,
    );
    let mut writer =
        GgufStreamWriter::new(out, &plan.metadata, &plan.tensor_specs()).map_err(output_error)?;
    let output_data_bytes = writer.data_sizes().iter().sum();
    progress.begin(plan);
    let mut slab = Vec::new();
    for (index, tensor) in plan.tensors.iter().enumerate() {
        progress.tensor(index, tensor);
        write_tensor(file, tensor, pool, &mut writer, &mut slab, progress).map_err(|error| {
            match error {
                TensorError::Quant(error) => error,
                TensorError::Output(error) => output_error(error),
            }
        })?;
    }
    let out = writer.finish().map_err(output_error)?;
    out.into_inner()
        .map_err(|e| write_error(e.into_error()))?
        .flush()
        .map_err(write_error)?;
    Ok(QuantizeSummary {
        n_tensors: plan.tensors.len(),
        n_converted: plan.tensors.iter().filter(|t| t.is_converted()).count(),
        n_fallback: plan.n_fallback,
        input_data_bytes: plan.tensors.iter().map(|t| t.input.n_bytes).sum(),
        output_data_bytes,
    })
}

/// Why a tensor could not be written: its conversion, or the output.
enum TensorError {
    Quant(QuantError),
    Output(FormatError),
}

impl From<QuantError> for TensorError {
    fn from(error: QuantError) -> TensorError {
        TensorError::Quant(error)
    }
}

/// Converts (or copies) one tensor a slab of rows at a time.
fn write_tensor<W: Write>(
    file: &GgufFile,
    tensor: &PlannedTensor,
    pool: &ThreadPool,
    writer: &mut GgufStreamWriter<W>,
    slab: &mut Vec<u8>,
    progress: &dyn Progress,
) -> Result<(), TensorError> {
    let name = tensor.input.name.as_str();
    let too_large = || QuantError::BadTensor {
        tensor: name.to_string(),
        reason: "too large for this machine's address space".to_string(),
    };
    let data = file.tensor_data(&tensor.input);
    let row_len = usize::try_from(tensor.input.row_len()).map_err(|_| too_large())?;
    let src_row_bytes = row_bytes(tensor.input.ggml_type, row_len).ok_or_else(too_large)?;
    let dst_row_bytes = row_bytes(tensor.target, row_len).ok_or_else(too_large)?;
    let rows_per_slab = (SLAB_ELEMENTS / row_len.max(1)).max(1);
    let conversion = RowConversion {
        tensor: name,
        from: tensor.input.ggml_type,
        to: tensor.target,
        row_len,
    };
    let slab_src_bytes = (rows_per_slab * src_row_bytes).max(1);
    let mut offset_in_file = usize::try_from(tensor.input.offset).map_err(|_| too_large())?;
    for src in data.chunks(slab_src_bytes) {
        if tensor.is_converted() {
            let n_rows = src.len() / src_row_bytes.max(1);
            slab.resize(n_rows * dst_row_bytes, 0);
            conversion.run(pool, src, slab)?;
            writer.write_data(slab).map_err(TensorError::Output)?;
        } else {
            writer.write_data(src).map_err(TensorError::Output)?;
        }
        // The slab is done with: its pages need not stay in this process's memory.
        file.release_range(offset_in_file, src.len());
        offset_in_file += src.len();
        progress.advance(src.len() as u64);
    }
    Ok(())
}

fn row_bytes(ggml_type: GgmlType, row_len: usize) -> Option<usize> {
    ggml_type
        .row_bytes(row_len as u64)
        .and_then(|b| usize::try_from(b).ok())
}

/// `output` with ".part" added to its file name: where the file is written until complete.
fn partial_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    output.with_file_name(name)
}

/// Whether `output` exists and is the same file as `input` (another name for it included).
fn is_same_file(input: &Path, output: &Path) -> bool {
    match (std::fs::canonicalize(input), std::fs::canonicalize(output)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

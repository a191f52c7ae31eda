//! `wazn quantize`: llama-quantize's command, same form, flags and type names, same bytes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use wazn_formats::GgmlType;
use wazn_quant::{
    quantize_file, FileType, MixOptions, PlannedTensor, Progress, QuantPlan, QuantizeOptions,
};

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// Allow requantizing tensors that are already quantized: they are dequantized to f32
    /// first, which loses quality compared with quantizing from 16 or 32 bits.
    #[arg(long)]
    pub allow_requantize: bool,
    /// Leave output.weight un(re)quantized.
    #[arg(long)]
    pub leave_output_tensor: bool,
    /// Type of output.weight (a ggml type name: q8_0, q6_k, f16, ...).
    #[arg(long, value_name = "TYPE")]
    pub output_tensor_type: Option<String>,
    /// Type of token_embd.weight (a ggml type name).
    #[arg(long, value_name = "TYPE")]
    pub token_embedding_type: Option<String>,
    /// No mix: every quantized tensor gets the type's own block type.
    #[arg(long)]
    pub pure: bool,
    /// Threads (default: every core).
    #[arg(short = 't', long = "threads", value_name = "N")]
    pub threads: Option<usize>,
    /// The GGUF model to quantize.
    pub input: PathBuf,
    /// Where to write the quantized model.
    pub output: PathBuf,
    /// Q4_K_M, Q8_0, F16, ... (any case), or a llama_ftype number.
    #[arg(value_name = "TYPE")]
    pub file_type: String,
    /// Threads, as llama-quantize's optional last argument (same as -t).
    #[arg(value_name = "NTHREADS")]
    pub nthreads: Option<usize>,
}

pub fn quantize(args: QuantizeArgs) -> Result<()> {
    let file_type = FileType::parse(&args.file_type)?;
    if args.input.is_dir() {
        return Err(anyhow!(
            "{} is a folder: wazn quantize reads GGUF files (Hugging Face folders are not supported yet)",
            args.input.display()
        ));
    }
    let mix = MixOptions {
        file_type,
        quantize_output_tensor: !args.leave_output_tensor,
        output_tensor_type: args
            .output_tensor_type
            .as_deref()
            .map(ggml_type)
            .transpose()?,
        token_embedding_type: args
            .token_embedding_type
            .as_deref()
            .map(ggml_type)
            .transpose()?,
        pure: args.pure,
    };
    let n_threads = args
        .threads
        .or(args.nthreads)
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let options = QuantizeOptions {
        mix,
        allow_requantize: args.allow_requantize,
        n_threads,
    };
    let start = Instant::now();
    let bar = ProgressBar::hidden();
    let progress = BarProgress {
        bar: &bar,
        n_tensors: AtomicUsize::new(0),
    };
    let result = quantize_file(&args.input, &args.output, &options, &progress);
    // The bar goes before anything else is printed, so an error is the only line left.
    bar.finish_and_clear();
    let summary = result?;
    eprintln!(
        "wrote {} as {file_type}: {} tensors ({} converted{}), {} -> {} in {:.1} s on {n_threads} threads",
        args.output.display(),
        summary.n_tensors,
        summary.n_converted,
        match summary.n_fallback {
            0 => String::new(),
            n => format!(", {n} fell back to another type for their row length"),
        },
        mib(summary.input_data_bytes),
        mib(summary.output_data_bytes),
        start.elapsed().as_secs_f64(),
    );
    Ok(())
}

/// A ggml type named as llama-quantize's --output-tensor-type takes it (any case).
fn ggml_type(name: &str) -> Result<GgmlType> {
    GgmlType::from_name(name).ok_or_else(|| anyhow!("invalid ggml type {name:?}"))
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1 << 20) as f64)
}

/// Bytes of input done, and which tensor is being converted, on stderr (drawn only when
/// stderr is a terminal).
struct BarProgress<'a> {
    bar: &'a ProgressBar,
    n_tensors: AtomicUsize,
}

impl Progress for BarProgress<'_> {
    fn begin(&self, plan: &QuantPlan) {
        let total: u64 = plan.tensors.iter().map(|t| t.input.n_bytes).sum();
        self.n_tensors.store(plan.tensors.len(), Ordering::Relaxed);
        self.bar.set_draw_target(ProgressDrawTarget::stderr());
        self.bar.set_length(total);
        self.bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:24}] {bytes}/{total_bytes} {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        self.bar.enable_steady_tick(Duration::from_millis(200));
    }

    fn tensor(&self, index: usize, tensor: &PlannedTensor) {
        self.bar.set_message(format!(
            "[{}/{}] {} {} -> {}",
            index + 1,
            self.n_tensors.load(Ordering::Relaxed),
            tensor.input.name,
            tensor.input.ggml_type,
            tensor.target
        ));
    }

    fn advance(&self, input_bytes: u64) {
        self.bar.inc(input_bytes);
    }
}

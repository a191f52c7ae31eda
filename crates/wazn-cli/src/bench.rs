//! `wazn bench`: prompt and generation speed, measured like llama.cpp's `llama-bench` so that
//! the two can be read side by side (same flags, same test names, same JSON field names).
//!
//! A `pp N` test is one forward pass over a batch of N prompt tokens of one fresh sequence; a
//! `tg N` test is N forward passes of one token each. Token ids are fixed pseudo-random ones
//! and nothing is sampled, so only the model's compute is timed. Loading is never timed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use wazn_formats::{GgufFile, HfFolder};
use wazn_kernels::{Activations, ThreadPool};
use wazn_models::{load_model_from, Batch, Model, ModelOptions, ModelSource};

use crate::model_path;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// GGUF model files or Hugging Face model folders (repeatable or comma-separated;
    /// default: the default model).
    #[arg(short = 'm', long = "model", value_name = "PATH")]
    pub models: Vec<String>,
    /// Prompt sizes in tokens, one `pp` test each (0 = none) [default: 512].
    #[arg(short = 'p', long = "n-prompt", value_name = "N")]
    pub n_prompt: Vec<String>,
    /// Generation sizes in tokens, one `tg` test each (0 = none) [default: 128].
    #[arg(short = 'n', long = "n-gen", value_name = "N")]
    pub n_gen: Vec<String>,
    /// Thread counts to test (repeatable or comma-separated) [default: one per core].
    #[arg(short = 't', long = "threads", value_name = "N")]
    pub threads: Vec<String>,
    /// Timed repetitions of each test (after one warm-up run).
    #[arg(
        short = 'r',
        long = "repetitions",
        value_name = "N",
        default_value = "5"
    )]
    pub repetitions: String,
    /// Output format: md (a markdown table) or jsonl (one JSON object per test).
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FORMAT",
        default_value = "md"
    )]
    pub output: String,
}

/// Bytes streamed by the read-bandwidth probe: large enough to defeat any cache.
const BANDWIDTH_PROBE_BYTES: usize = 1 << 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    Markdown,
    Jsonl,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TestKind {
    /// One batched forward pass of N tokens.
    Prompt(usize),
    /// N single-token forward passes.
    Generation(usize),
}

impl TestKind {
    fn n_tokens(self) -> usize {
        match self {
            TestKind::Prompt(n) | TestKind::Generation(n) => n,
        }
    }

    fn name(self) -> String {
        match self {
            TestKind::Prompt(n) => format!("pp{n}"),
            TestKind::Generation(n) => format!("tg{n}"),
        }
    }
}

/// What is printed about the model in every row.
struct ModelFacts {
    filename: String,
    /// llama-bench's description: architecture, size label, dominant weight type.
    model_type: String,
    /// Bytes of tensor data (not the file size).
    size_bytes: u64,
    n_params: u64,
}

/// One finished test.
struct TestResult {
    kind: TestKind,
    n_threads: usize,
    /// Wall time of each timed repetition, in nanoseconds.
    samples_ns: Vec<u64>,
    test_time: String,
    /// For generation tests: bytes of weights read per token and the measured read bandwidth
    /// (bytes/s) at this thread count.
    bandwidth: Option<(u64, f64)>,
}

pub fn bench(args: BenchArgs) -> Result<()> {
    let models = parse_models(&args.models)?;
    let n_prompt = parse_counts(&args.n_prompt, "-p", 512, true)?;
    let n_gen = parse_counts(&args.n_gen, "-n", 128, true)?;
    let threads = parse_counts(
        &args.threads,
        "-t",
        wazn_engine::engine::default_threads(),
        false,
    )?;
    let repetitions = parse_count(&args.repetitions, "-r", false)?;
    let output = match args.output.as_str() {
        "md" => Output::Markdown,
        "jsonl" => Output::Jsonl,
        other => bail!("-o: unknown output format '{other}' (expected md or jsonl)"),
    };
    let mut tests: Vec<TestKind> = n_prompt
        .iter()
        .filter(|&&n| n > 0)
        .map(|&n| TestKind::Prompt(n))
        .collect();
    tests.extend(
        n_gen
            .iter()
            .filter(|&&n| n > 0)
            .map(|&n| TestKind::Generation(n)),
    );
    if tests.is_empty() {
        bail!("nothing to run: every -p and -n value is 0");
    }

    // Every file is opened (not yet loaded) before anything is printed, so that a bad path
    // ends the command with its error alone.
    let sources = models
        .iter()
        .map(|path| {
            ModelSource::open(path)
                .map(|source| (path, source))
                .with_context(|| format!("cannot load {}", path.display()))
        })
        .collect::<Result<Vec<_>>>()?;

    let read_bw = if tests.iter().any(|t| matches!(t, TestKind::Generation(_))) {
        measure_read_bandwidth(&threads)?
    } else {
        Vec::new()
    };
    if output == Output::Markdown {
        print_markdown_header();
    }
    for (path, source) in sources {
        let facts = match &source {
            ModelSource::Gguf(file) => gguf_facts(path, file),
            ModelSource::HfFolder(folder) => hf_folder_facts(path, folder),
        };
        let options = ModelOptions {
            activations: Activations::Quantized,
        };
        let model = load_model_from(&source, &options)
            .with_context(|| format!("cannot load {}", path.display()))?;
        for &n_threads in &threads {
            let pool = ThreadPool::new(n_threads)
                .with_context(|| format!("cannot start {n_threads} threads"))?;
            for &kind in &tests {
                let bw = match kind {
                    TestKind::Generation(_) => read_bw
                        .iter()
                        .find(|&&(t, _)| t == n_threads)
                        .map(|&(_, bw)| (model.info().weight_bytes, bw)),
                    TestKind::Prompt(_) => None,
                };
                let test_time = utc_timestamp(SystemTime::now());
                let samples_ns = run_test(model.as_ref(), &pool, kind, repetitions)
                    .with_context(|| format!("{} {}", path.display(), kind.name()))?;
                let result = TestResult {
                    kind,
                    n_threads,
                    samples_ns,
                    test_time,
                    bandwidth: bw,
                };
                match output {
                    Output::Markdown => print_markdown_row(&facts, &result),
                    Output::Jsonl => println!("{}", json_line(&facts, &result)),
                }
            }
        }
    }
    if output == Output::Markdown {
        print_bandwidth_note(&read_bw);
    }
    Ok(())
}

/// `-m` values: repeatable and comma-separated; the default model when none is given.
fn parse_models(values: &[String]) -> Result<Vec<PathBuf>> {
    let paths: Vec<PathBuf> = values
        .iter()
        .flat_map(|v| v.split(','))
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect();
    if paths.is_empty() {
        return Ok(vec![model_path::resolve(None)?]);
    }
    Ok(paths)
}

/// A list flag's values (repeatable and comma-separated), or `default` when absent.
fn parse_counts(
    values: &[String],
    flag: &str,
    default: usize,
    zero_ok: bool,
) -> Result<Vec<usize>> {
    if values.is_empty() {
        return Ok(vec![default]);
    }
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|s| parse_count(s, flag, zero_ok))
        .collect()
}

fn parse_count(value: &str, flag: &str, zero_ok: bool) -> Result<usize> {
    let n: usize = value
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{flag}: '{value}' is not a whole number"))?;
    if n == 0 && !zero_ok {
        bail!("{flag}: must be at least 1");
    }
    Ok(n)
}

/// One warm-up run (as llama-bench: the whole prompt for `pp`, one token for `tg`), then
/// `repetitions` timed runs, each on a fresh KV cache. Returns each run's nanoseconds.
fn run_test(
    model: &dyn Model,
    pool: &ThreadPool,
    kind: TestKind,
    repetitions: usize,
) -> Result<Vec<u64>> {
    let n_vocab = model.info().n_vocab;
    let tokens = bench_tokens(kind.n_tokens(), n_vocab);
    let warm_up = match kind {
        TestKind::Prompt(_) => kind,
        TestKind::Generation(_) => TestKind::Generation(1),
    };
    time_once(model, pool, warm_up, &tokens)?;
    let mut samples_ns = Vec::with_capacity(repetitions);
    for _ in 0..repetitions {
        let elapsed = time_once(model, pool, kind, &tokens)?;
        samples_ns.push(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }
    Ok(samples_ns)
}

/// Runs one test on a fresh cache; only the forward passes are inside the timed region.
fn time_once(
    model: &dyn Model,
    pool: &ThreadPool,
    kind: TestKind,
    tokens: &[u32],
) -> Result<Duration> {
    let n = kind.n_tokens().min(tokens.len());
    let mut kv = model.new_kv_cache(n.max(1));
    match kind {
        TestKind::Prompt(_) => {
            let batch = Batch::for_sequence(0, 0, &tokens[..n]);
            let start = Instant::now();
            let logits = model.forward(&batch, &mut kv, pool)?;
            let elapsed = start.elapsed();
            std::hint::black_box(logits);
            Ok(elapsed)
        }
        TestKind::Generation(_) => {
            let batches: Vec<Batch> = tokens[..n]
                .iter()
                .enumerate()
                .map(|(pos, &token)| Batch::for_sequence(0, pos, &[token]))
                .collect();
            let start = Instant::now();
            for batch in &batches {
                let logits = model.forward(batch, &mut kv, pool)?;
                std::hint::black_box(logits);
            }
            Ok(start.elapsed())
        }
    }
}

/// `n` token ids spread over the vocabulary by a fixed linear congruential sequence: the
/// same ids in every run, and no tokenizer needed.
fn bench_tokens(n: usize, n_vocab: usize) -> Vec<u32> {
    let n_vocab = n_vocab.max(1) as u64;
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            // The high bits of an LCG are the well-mixed ones.
            ((state >> 33) % n_vocab) as u32
        })
        .collect()
}

fn gguf_facts(path: &Path, file: &GgufFile) -> ModelFacts {
    let tensors = file.tensors();
    let n_params: u64 = tensors.iter().map(|t| t.n_elements()).sum();
    let size_bytes: u64 = tensors.iter().map(|t| t.n_bytes).sum();
    let md = file.metadata();
    let arch = file.architecture().unwrap_or("unknown").to_string();
    let size_label = md
        .get_str("general.size_label")
        .ok()
        .flatten()
        .map(str::to_string)
        .unwrap_or_else(|| params_label(n_params));
    // The weight type holding the most parameters names the file, as its file_type would.
    let mut elements_by_type: HashMap<&'static str, u64> = HashMap::new();
    for t in tensors.iter().filter(|t| t.dims.len() >= 2) {
        *elements_by_type.entry(t.ggml_type.name()).or_default() += t.n_elements();
    }
    let dtype = elements_by_type
        .into_iter()
        .max_by_key(|&(name, n)| (n, name))
        .map_or("?", |(name, _)| name);
    ModelFacts {
        filename: path.display().to_string(),
        model_type: format!("{arch} {size_label} {dtype}"),
        size_bytes,
        n_params,
    }
}

/// The same facts for a Hugging Face folder: MXFP4 `*_blocks` hold two values a byte and
/// their `*_scales` are not parameters.
fn hf_folder_facts(path: &Path, folder: &HfFolder) -> ModelFacts {
    let mut n_params: u64 = 0;
    let mut size_bytes: u64 = 0;
    let mut elements_by_type: HashMap<&'static str, u64> = HashMap::new();
    for info in folder
        .shards()
        .iter()
        .flat_map(|s| s.header().tensors.iter())
    {
        size_bytes += info.file_end.saturating_sub(info.file_start);
        if info.name.ends_with("_scales") {
            continue;
        }
        let (dtype, n) = if info.name.ends_with("_blocks") {
            ("MXFP4", info.n_elements().saturating_mul(2))
        } else {
            (info.dtype.name(), info.n_elements())
        };
        n_params += n;
        if info.shape.len() >= 2 {
            *elements_by_type.entry(dtype).or_default() += n;
        }
    }
    let arch = folder.model_type().unwrap_or("unknown");
    let dtype = elements_by_type
        .into_iter()
        .max_by_key(|&(name, n)| (n, name))
        .map_or("?", |(name, _)| name);
    ModelFacts {
        filename: path.display().to_string(),
        model_type: format!("{arch} {} {dtype}", params_label(n_params)),
        size_bytes,
        n_params,
    }
}

/// "135M", "1.7B": a parameter count as model names write it.
fn params_label(n_params: u64) -> String {
    let n = n_params as f64;
    if n >= 1e9 {
        format!("{:.1}B", n / 1e9)
    } else {
        format!("{:.0}M", n / 1e6)
    }
}

/// Mean and sample standard deviation (0 for a single value).
fn mean_sd(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

impl TestResult {
    /// Tokens per second of each repetition.
    fn samples_ts(&self) -> Vec<f64> {
        let n = self.kind.n_tokens() as f64;
        self.samples_ns
            .iter()
            .map(|&ns| n * 1e9 / (ns.max(1) as f64))
            .collect()
    }

    /// Generation's upper bound if every weight byte is read once per token at the measured
    /// bandwidth: tokens/s.
    fn bandwidth_bound_ts(&self) -> Option<f64> {
        self.bandwidth
            .filter(|&(bytes, _)| bytes > 0)
            .map(|(bytes, bytes_per_s)| bytes_per_s / bytes as f64)
    }
}

fn json_line(facts: &ModelFacts, r: &TestResult) -> serde_json::Value {
    let (n_prompt, n_gen) = match r.kind {
        TestKind::Prompt(n) => (n, 0),
        TestKind::Generation(n) => (0, n),
    };
    let samples_ts = r.samples_ts();
    let (avg_ts, stddev_ts) = mean_sd(&samples_ts);
    let ns: Vec<f64> = r.samples_ns.iter().map(|&v| v as f64).collect();
    let (avg_ns, stddev_ns) = mean_sd(&ns);
    let mut line = json!({
        "build_commit": env!("CARGO_PKG_VERSION"),
        "backends": "CPU",
        "model_filename": facts.filename,
        "model_type": facts.model_type,
        "model_size": facts.size_bytes,
        "model_n_params": facts.n_params,
        "n_threads": r.n_threads,
        "n_prompt": n_prompt,
        "n_gen": n_gen,
        "test_time": r.test_time,
        "avg_ns": avg_ns.round() as u64,
        "stddev_ns": stddev_ns.round() as u64,
        "avg_ts": avg_ts,
        "stddev_ts": stddev_ts,
        "samples_ns": r.samples_ns,
        "samples_ts": samples_ts,
    });
    if let (Some((weight_bytes, bytes_per_s)), Some(bound)) = (r.bandwidth, r.bandwidth_bound_ts())
    {
        line["weight_bytes_per_token"] = json!(weight_bytes);
        line["read_bandwidth_bytes_per_s"] = json!(bytes_per_s.round() as u64);
        line["bw_bound_ts"] = json!(bound);
        line["bw_bound_share"] = json!(avg_ts / bound);
    }
    line
}

fn print_markdown_header() {
    println!(
        "| {:<30} | {:>10} | {:>10} | {:>7} | {:>8} | {:>16} | {:>12} | {:>10} |",
        "model", "size", "params", "threads", "test", "t/s", "bw bound t/s", "% of bound"
    );
    println!(
        "| {:-<30} | {:->9}: | {:->9}: | {:->6}: | {:->7}: | {:->15}: | {:->11}: | {:->9}: |",
        "", "", "", "", "", "", "", ""
    );
}

fn print_markdown_row(facts: &ModelFacts, r: &TestResult) {
    let (avg_ts, stddev_ts) = mean_sd(&r.samples_ts());
    let (bound, share) = match r.bandwidth_bound_ts() {
        Some(bound) => (
            format!("{bound:.2}"),
            format!("{:.1} %", 100.0 * avg_ts / bound),
        ),
        None => (String::new(), String::new()),
    };
    println!(
        "| {:<30} | {:>10} | {:>10} | {:>7} | {:>8} | {:>16} | {:>12} | {:>10} |",
        facts.model_type,
        format!("{:.2} MiB", facts.size_bytes as f64 / (1024.0 * 1024.0)),
        format!("{:.2} M", facts.n_params as f64 / 1e6),
        r.n_threads,
        r.kind.name(),
        format!("{avg_ts:.2} ± {stddev_ts:.2}"),
        bound,
        share
    );
}

/// Read bandwidth of this machine in bytes/s for each thread count: the best of three
/// multi-threaded passes reading a buffer far larger than any cache. Measured before any test
/// and the buffer freed, so that it holds no memory while the model runs.
fn measure_read_bandwidth(threads: &[usize]) -> Result<Vec<(usize, f64)>> {
    let n = BANDWIDTH_PROBE_BYTES / std::mem::size_of::<u64>();
    let mut buffer: Vec<u64> = Vec::new();
    buffer
        .try_reserve_exact(n)
        .context("cannot allocate the 1 GiB buffer of the bandwidth probe")?;
    // Non-zero values so that every page is really backed by memory.
    buffer.resize(n, 0x0101_0101_0101_0101);
    let bytes = BANDWIDTH_PROBE_BYTES as f64;
    let mut by_threads: Vec<(usize, f64)> = Vec::new();
    for &n_threads in threads {
        if by_threads.iter().any(|&(t, _)| t == n_threads) {
            continue;
        }
        let best = (0..3)
            .map(|_| time_parallel_read(&buffer, n_threads))
            .min()
            .unwrap_or(Duration::MAX);
        by_threads.push((n_threads, bytes / best.as_secs_f64().max(1e-9)));
    }
    Ok(by_threads)
}

fn print_bandwidth_note(read_bw: &[(usize, f64)]) {
    if !read_bw.is_empty() {
        println!();
    }
    for &(n_threads, bw) in read_bw {
        println!(
            "read bandwidth, {n_threads} thread(s): {:.1} GB/s (bw bound = weight bytes per token / this)",
            bw / 1e9
        );
    }
}

/// Bytes a thread of the bandwidth probe reads at a time: about one task of a decode
/// step's matrix product (128 weight rows).
const BANDWIDTH_PROBE_CHUNK: usize = 256 << 10;

/// Time for `n_threads` threads to read all of `data` the way a decode step reads its
/// weights: chunks of about one task, claimed in turn from a shared counter (so the
/// threads read interleaved parts of memory, as the pool's tasks do), each read with the
/// weight kernels' loads and prefetch ([`wazn_kernels::simd::read_stream`]).
fn time_parallel_read(data: &[u64], n_threads: usize) -> Duration {
    // SAFETY: any initialized u64 is 8 initialized bytes, and u8 needs no alignment.
    let bytes = unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), data.len() * 8) };
    let next = AtomicUsize::new(0);
    let n_chunks = bytes.len().div_ceil(BANDWIDTH_PROBE_CHUNK);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..n_threads.max(1) {
            scope.spawn(|| {
                let mut sum = 0u64;
                loop {
                    let chunk = next.fetch_add(1, Ordering::Relaxed);
                    if chunk >= n_chunks {
                        break;
                    }
                    let lo = chunk * BANDWIDTH_PROBE_CHUNK;
                    let part = &bytes[lo..(lo + BANDWIDTH_PROBE_CHUNK).min(bytes.len())];
                    sum = sum.wrapping_add(wazn_kernels::simd::read_stream(part));
                }
                std::hint::black_box(sum);
            });
        }
    });
    start.elapsed()
}

/// `2026-11-28T12:34:56Z`, as llama-bench writes `test_time`.
fn utc_timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (the era-based method: 400-year
/// eras of 146097 days, years starting in March so that the leap day comes last).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        // 2000-02-29 (a leap day in a 400-year leap year) is day 11016.
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        // 2026-11-28 is day 20785.
        assert_eq!(civil_from_days(20_785), (2026, 11, 28));
    }

    #[test]
    fn sample_standard_deviation() {
        let (mean, sd) = mean_sd(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert!((mean - 5.0).abs() < 1e-12);
        // Sum of squared deviations 32 over n - 1 = 7.
        assert!((sd - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn count_lists_split_on_commas() {
        let v = vec!["1,2".to_string(), "4".to_string()];
        assert_eq!(parse_counts(&v, "-t", 9, false).unwrap(), vec![1, 2, 4]);
        assert_eq!(parse_counts(&[], "-t", 9, false).unwrap(), vec![9]);
        assert!(parse_counts(&["0".to_string()], "-t", 9, false).is_err());
        assert!(parse_counts(&["x".to_string()], "-p", 9, true).is_err());
    }
}

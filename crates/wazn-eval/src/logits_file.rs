//! The file of base log-probabilities that `llama-perplexity --kl-divergence-base` writes
//! and `--kl-divergence` reads, so that a base written by either tool works with the
//! other. Little-endian throughout:
//!
//! ```text
//! "_logits_"                      8 bytes
//! n_ctx, n_vocab, n_chunk         i32 each
//! tokens                          i32 × n_chunk·n_ctx (the text's tokens, BOS not put in)
//! per chunk, per scored position  u16 × nv, nv = 2·⌈n_vocab/2⌉ + 4:
//!     scale, min_log_prob         two f32 (the first four u16)
//!     q[i] for every token i      log p_i ≈ scale·q[i] + min_log_prob
//! ```
//!
//! A chunk scores its positions n_ctx/2 + 1 … n_ctx − 1, from the logits of the rows
//! before them ([`scored_rows_per_chunk`]). Log-probabilities more than 16 below the best
//! are stored as 0 (the minimum).

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::EvalError;

const MAGIC: &[u8; 8] = b"_logits_";
const HEADER_BYTES: u64 = 8 + 3 * 4;

/// Positions of a chunk of `n_ctx` tokens whose token is scored.
pub fn scored_rows_per_chunk(n_ctx: usize) -> usize {
    n_ctx.saturating_sub(1 + n_ctx / 2)
}

/// u16 values in one stored row.
fn row_values(n_vocab: usize) -> usize {
    2 * n_vocab.div_ceil(2) + 4
}

/// What a base file holds besides its rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseHeader {
    pub n_ctx: usize,
    pub n_vocab: usize,
    pub n_chunk: usize,
    /// The tokens of every chunk, chunk after chunk.
    pub tokens: Vec<u32>,
}

impl BaseHeader {
    fn data_start(&self) -> u64 {
        HEADER_BYTES + 4 * self.tokens.len() as u64
    }

    fn row_offset(&self, chunk: usize, row: usize) -> u64 {
        let index = (chunk * scored_rows_per_chunk(self.n_ctx) + row) as u64;
        self.data_start() + index * 2 * row_values(self.n_vocab) as u64
    }

    fn file_len(&self) -> u64 {
        self.row_offset(self.n_chunk, 0)
    }
}

/// One stored row: the log-probabilities of every token, 16-bit quantized.
#[derive(Clone, Debug, Default)]
pub struct BaseRow {
    scale: f32,
    min_log_prob: f32,
    q: Vec<u16>,
}

impl BaseRow {
    /// Quantizes the log-softmax of `logits` as llama-perplexity does (the same f32
    /// arithmetic and rounding, so the bytes agree), and returns the negative
    /// log-likelihood of `token`.
    pub fn quantize(logits: &[f32], token: u32, row: &mut BaseRow) -> f64 {
        let (mut max_logit, mut min_logit) = (logits[0], logits[0]);
        for &l in &logits[1..] {
            max_logit = max_logit.max(l);
            min_logit = min_logit.min(l);
        }
        min_logit = min_logit.max(max_logit - 16.0);
        let sum_exp: f64 = logits
            .iter()
            .map(|&l| f64::from((l - max_logit).exp()))
            .sum();
        let log_sum_exp = sum_exp.ln() as f32;
        row.min_log_prob = min_logit - max_logit - log_sum_exp;
        row.scale = (max_logit - min_logit) / 65535.0;
        row.q.clear();
        if row.scale != 0.0 {
            let inv_scale = 1.0 / row.scale;
            row.q.extend(logits.iter().map(|&l| {
                if l > min_logit {
                    nearest_int(inv_scale * (l - min_logit)) as u16
                } else {
                    0
                }
            }));
        } else {
            row.q.resize(logits.len(), 0);
        }
        f64::from(max_logit + log_sum_exp - logits[token as usize])
    }

    pub fn scale(&self) -> f32 {
        self.scale
    }

    pub fn min_log_prob(&self) -> f32 {
        self.min_log_prob
    }

    /// The quantized log-probability of every token.
    pub fn values(&self) -> &[u16] {
        &self.q
    }

    /// The stored log-probability of token `i`.
    pub fn log_prob(&self, i: usize) -> f32 {
        self.scale * f32::from(self.q[i]) + self.min_log_prob
    }

    fn to_bytes(&self, n_vocab: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 * row_values(n_vocab));
        out.extend_from_slice(&self.scale.to_le_bytes());
        out.extend_from_slice(&self.min_log_prob.to_le_bytes());
        for &q in &self.q {
            out.extend_from_slice(&q.to_le_bytes());
        }
        out.resize(2 * row_values(n_vocab), 0);
        out
    }

    fn read_from(bytes: &[u8], n_vocab: usize, row: &mut BaseRow) {
        let f32_at =
            |i: usize| f32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        row.scale = f32_at(0);
        row.min_log_prob = f32_at(4);
        row.q.clear();
        row.q.extend(
            bytes[8..8 + 2 * n_vocab]
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]])),
        );
    }
}

/// Rounds to the nearest integer, halves to even, as ggml's `nearest_int` (valid for
/// |x| < 2^22, which the scale keeps: x ≤ 65535).
fn nearest_int(x: f32) -> i32 {
    let shifted = x + 12_582_912.0;
    (shifted.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// Writes a base file; rows may come in any order.
pub struct BaseWriter {
    file: File,
    path: PathBuf,
    header: BaseHeader,
}

impl BaseWriter {
    pub fn create(path: &Path, header: BaseHeader) -> Result<BaseWriter, EvalError> {
        let io = |source| EvalError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::create(path).map_err(io)?;
        let mut head = Vec::with_capacity(header.data_start() as usize);
        head.extend_from_slice(MAGIC);
        for n in [header.n_ctx, header.n_vocab, header.n_chunk] {
            head.extend_from_slice(&(n as i32).to_le_bytes());
        }
        for &t in &header.tokens {
            head.extend_from_slice(&(t as i32).to_le_bytes());
        }
        file.write_all(&head).map_err(io)?;
        file.set_len(header.file_len()).map_err(io)?;
        Ok(BaseWriter {
            file,
            path: path.to_path_buf(),
            header,
        })
    }

    pub fn write_row(&mut self, chunk: usize, row: usize, data: &BaseRow) -> Result<(), EvalError> {
        let io = |source| EvalError::Io {
            path: self.path.clone(),
            source,
        };
        let offset = self.header.row_offset(chunk, row);
        self.file.seek(SeekFrom::Start(offset)).map_err(io)?;
        self.file
            .write_all(&data.to_bytes(self.header.n_vocab))
            .map_err(io)
    }

    pub fn finish(self) -> Result<(), EvalError> {
        self.file.sync_all().map_err(|source| EvalError::Io {
            path: self.path,
            source,
        })
    }
}

/// Reads a base file, checking its header and its length before any row is read.
pub struct BaseReader {
    file: BufReader<File>,
    path: PathBuf,
    header: BaseHeader,
    buf: Vec<u8>,
}

impl BaseReader {
    pub fn open(path: &Path) -> Result<BaseReader, EvalError> {
        let io = |source| EvalError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bad = |why: String| EvalError::BadBase {
            path: path.to_path_buf(),
            why,
        };
        let file = File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let mut file = BufReader::new(file);
        let mut head = [0u8; HEADER_BYTES as usize];
        if file_len < HEADER_BYTES || file.read_exact(&mut head).is_err() {
            return Err(bad("too short to hold a header".into()));
        }
        if &head[..8] != MAGIC {
            return Err(bad(
                "not a file of base log-probabilities (no \"_logits_\" at its start)".into(),
            ));
        }
        let int_at =
            |i: usize| i32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let (n_ctx, n_vocab, n_chunk) = (int_at(8), int_at(12), int_at(16));
        if n_ctx < 4 || n_vocab < 1 || n_chunk < 1 {
            return Err(bad(format!(
                "its header says n_ctx {n_ctx}, n_vocab {n_vocab}, n_chunk {n_chunk}"
            )));
        }
        let (n_ctx, n_vocab, n_chunk) = (n_ctx as usize, n_vocab as usize, n_chunk as usize);
        let n_tokens = n_ctx
            .checked_mul(n_chunk)
            .filter(|&n| (HEADER_BYTES + 4 * n as u64) <= file_len)
            .ok_or_else(|| bad(format!("too short for {n_chunk} chunks of {n_ctx} tokens")))?;
        let mut bytes = vec![0u8; 4 * n_tokens];
        file.read_exact(&mut bytes).map_err(io)?;
        let mut tokens = Vec::with_capacity(n_tokens);
        for b in bytes.chunks_exact(4) {
            let t = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            match u32::try_from(t) {
                Ok(t) if (t as usize) < n_vocab => tokens.push(t),
                _ => {
                    return Err(bad(format!(
                        "token {t} is outside its vocabulary of {n_vocab}"
                    )))
                }
            }
        }
        let header = BaseHeader {
            n_ctx,
            n_vocab,
            n_chunk,
            tokens,
        };
        if file_len != header.file_len() {
            return Err(bad(format!(
                "{file_len} bytes where {n_chunk} chunks of {n_ctx} tokens over a vocabulary \
                 of {n_vocab} take {}",
                header.file_len()
            )));
        }
        Ok(BaseReader {
            file,
            path: path.to_path_buf(),
            header,
            buf: Vec::new(),
        })
    }

    pub fn header(&self) -> &BaseHeader {
        &self.header
    }

    pub fn read_row(
        &mut self,
        chunk: usize,
        row: usize,
        out: &mut BaseRow,
    ) -> Result<(), EvalError> {
        let io = |source| EvalError::Io {
            path: self.path.clone(),
            source,
        };
        let offset = self.header.row_offset(chunk, row);
        self.file.seek(SeekFrom::Start(offset)).map_err(io)?;
        self.buf.resize(2 * row_values(self.header.n_vocab), 0);
        self.file.read_exact(&mut self.buf).map_err(io)?;
        BaseRow::read_from(&self.buf, self.header.n_vocab, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_halves_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(65534.6), 65535);
        assert_eq!(nearest_int(-1.5), -2);
    }

    #[test]
    fn rows_round_trip_through_a_file() {
        let dir = std::env::temp_dir().join(format!("wazn-base-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("base.bin");
        let n_vocab = 5;
        let header = BaseHeader {
            n_ctx: 8,
            n_vocab,
            n_chunk: 2,
            tokens: (0..16).map(|t| t % 5).collect(),
        };
        let mut writer = BaseWriter::create(&path, header.clone()).unwrap();
        let mut rows = Vec::new();
        // Rows written out of order land where they belong.
        for (chunk, row) in [(1, 2), (0, 0), (1, 0), (0, 2), (0, 1), (1, 1)] {
            let logits: Vec<f32> = (0..n_vocab)
                .map(|i| (i * (chunk + 2) + row) as f32 * 0.7)
                .collect();
            let mut data = BaseRow::default();
            let nll = BaseRow::quantize(&logits, 1, &mut data);
            assert!(nll > 0.0);
            writer.write_row(chunk, row, &data).unwrap();
            rows.push(((chunk, row), data));
        }
        writer.finish().unwrap();
        let mut reader = BaseReader::open(&path).unwrap();
        assert_eq!(reader.header(), &header);
        for ((chunk, row), data) in rows {
            let mut back = BaseRow::default();
            reader.read_row(chunk, row, &mut back).unwrap();
            assert_eq!(back.values(), data.values());
            assert_eq!(back.scale(), data.scale());
            assert_eq!(back.min_log_prob(), data.min_log_prob());
        }
        // A truncated file is refused before any row is read.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let err = BaseReader::open(&path).err().unwrap().to_string();
        assert!(err.contains("bytes where 2 chunks"), "{err}");
        std::fs::write(&path, b"not a base").unwrap();
        assert!(BaseReader::open(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

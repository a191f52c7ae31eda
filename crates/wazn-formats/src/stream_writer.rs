//! A GGUF writer that never holds the file: the header goes out first (every tensor's size
//! follows from its type and shape, so the offsets are known before any data exists), then
//! each tensor's data in header order, in as many pieces as the caller likes, each tensor
//! padded to the alignment once its last byte is in.
//!
//! Files of any size are written in the memory of one piece, which is what a quantizer
//! needs: it produces a tensor a slab of rows at a time.

use std::io::Write;

use crate::error::FormatError;
use crate::metadata::MetaValue;
use crate::writer::{encode_header, unwritable, TensorSpec};

/// Zeros for padding: an alignment is at most this many bytes in any real file, and
/// larger ones are written in several pieces.
const ZEROS: [u8; 256] = [0; 256];

/// Writes one GGUF file to `W` front to back. Create it with [`GgufStreamWriter::new`],
/// hand it each tensor's bytes with [`GgufStreamWriter::write_data`], and close it with
/// [`GgufStreamWriter::finish`], which checks that every tensor got all its bytes.
#[derive(Debug)]
pub struct GgufStreamWriter<W: Write> {
    out: W,
    names: Vec<String>,
    data_sizes: Vec<u64>,
    alignment: u64,
    /// The tensor whose data comes next, and how many of its bytes are written.
    current: usize,
    written_of_current: u64,
}

impl<W: Write> GgufStreamWriter<W> {
    /// Writes the header (version 3): `metadata` in the order given, then the infos of
    /// `tensors`, whose data must follow in the same order.
    pub fn new(
        mut out: W,
        metadata: &[(String, MetaValue)],
        tensors: &[TensorSpec],
    ) -> Result<GgufStreamWriter<W>, FormatError> {
        let header = encode_header(3, metadata, tensors)?;
        out.write_all(&header.bytes).map_err(write_failed)?;
        let mut writer = GgufStreamWriter {
            out,
            names: tensors.iter().map(|t| t.name.clone()).collect(),
            data_sizes: header.data_sizes,
            alignment: header.alignment,
            current: 0,
            written_of_current: 0,
        };
        writer.skip_empty_tensors();
        Ok(writer)
    }

    /// The bytes of data each tensor takes (without padding), in header order.
    pub fn data_sizes(&self) -> &[u64] {
        &self.data_sizes
    }

    /// Appends `bytes` to the data of the current tensor; once it has all its bytes it is
    /// padded and the next tensor's data begins. Bytes beyond the last tensor, or a piece
    /// that would run past the end of the current one, are an error.
    pub fn write_data(&mut self, bytes: &[u8]) -> Result<(), FormatError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let Some(&size) = self.data_sizes.get(self.current) else {
            return Err(unwritable(format!(
                "{} bytes of data after the last tensor",
                bytes.len()
            )));
        };
        let remaining = size - self.written_of_current;
        if bytes.len() as u64 > remaining {
            return Err(unwritable(format!(
                "tensor {:?} takes {size} bytes, but {} were given",
                self.names[self.current],
                self.written_of_current + bytes.len() as u64
            )));
        }
        self.out.write_all(bytes).map_err(write_failed)?;
        self.written_of_current += bytes.len() as u64;
        if self.written_of_current == size {
            self.pad(size)?;
            self.current += 1;
            self.written_of_current = 0;
            self.skip_empty_tensors();
        }
        Ok(())
    }

    /// Checks that every tensor's data was written, flushes, and returns the output.
    pub fn finish(mut self) -> Result<W, FormatError> {
        if let Some(name) = self.names.get(self.current) {
            return Err(unwritable(format!(
                "tensor {name:?} has {} of its {} bytes of data",
                self.written_of_current, self.data_sizes[self.current]
            )));
        }
        self.out.flush().map_err(write_failed)?;
        Ok(self.out)
    }

    /// Zeros after a tensor of `size` bytes, up to the alignment.
    fn pad(&mut self, size: u64) -> Result<(), FormatError> {
        let mut padding = size.next_multiple_of(self.alignment) - size;
        while padding > 0 {
            let n = padding.min(ZEROS.len() as u64);
            self.out
                .write_all(&ZEROS[..n as usize])
                .map_err(write_failed)?;
            padding -= n;
        }
        Ok(())
    }

    /// Tensors with no elements have no data (and no padding): they are done at once.
    fn skip_empty_tensors(&mut self) {
        while self.data_sizes.get(self.current) == Some(&0) {
            self.current += 1;
        }
    }
}

fn write_failed(source: std::io::Error) -> FormatError {
    FormatError::WriteFailed { source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ggml_type::GgmlType;
    use crate::gguf::GgufHeader;
    use crate::writer::GgufWriter;

    fn metadata() -> Vec<(String, MetaValue)> {
        vec![
            ("general.architecture".to_string(), MetaValue::from("llama")),
            ("general.alignment".to_string(), MetaValue::U32(64)),
        ]
    }

    fn tensors() -> Vec<(TensorSpec, Vec<u8>)> {
        vec![
            (
                TensorSpec::new("a.weight", GgmlType::F32, &[3, 2]),
                (0u8..24).collect(),
            ),
            (TensorSpec::new("empty", GgmlType::F16, &[0]), vec![]),
            (
                TensorSpec::new("b.weight", GgmlType::Q8_0, &[32, 3]),
                (0u8..102).collect(),
            ),
        ]
    }

    /// The file the in-memory writer builds from the same parts.
    fn expected() -> Vec<u8> {
        let mut writer = GgufWriter::new();
        for (k, v) in metadata() {
            writer = writer.metadata(k, v);
        }
        for (spec, data) in tensors() {
            writer = writer.tensor(spec.name, spec.ggml_type, &spec.dims, data);
        }
        writer.to_bytes().unwrap()
    }

    #[test]
    fn pieces_of_any_size_make_the_same_file_as_the_in_memory_writer() {
        let specs: Vec<TensorSpec> = tensors().into_iter().map(|(s, _)| s).collect();
        let data: Vec<u8> = tensors().into_iter().flat_map(|(_, d)| d).collect();
        for piece in [1, 5, 24, 200] {
            let mut writer = GgufStreamWriter::new(Vec::new(), &metadata(), &specs).unwrap();
            assert_eq!(writer.data_sizes(), &[24, 0, 102]);
            // Pieces never straddle two tensors.
            let (a, b) = data.split_at(24);
            for part in a.chunks(piece).chain(b.chunks(piece)) {
                writer.write_data(part).unwrap();
            }
            let bytes = writer.finish().unwrap();
            assert_eq!(bytes, expected(), "pieces of {piece}");
            let header = GgufHeader::parse(&bytes).unwrap();
            assert_eq!(header.alignment, 64);
            assert_eq!(header.tensors.len(), 3);
        }
    }

    #[test]
    fn too_many_or_too_few_bytes_are_errors() {
        let specs: Vec<TensorSpec> = tensors().into_iter().map(|(s, _)| s).collect();
        let mut writer = GgufStreamWriter::new(Vec::new(), &metadata(), &specs).unwrap();
        let err = writer.write_data(&[0; 25]).unwrap_err().to_string();
        assert!(err.contains("a.weight"), "{err}");

        let mut writer = GgufStreamWriter::new(Vec::new(), &metadata(), &specs).unwrap();
        writer.write_data(&[0; 24]).unwrap();
        let err = writer.finish().unwrap_err().to_string();
        assert!(
            err.contains("b.weight") && err.contains("0 of its 102"),
            "{err}"
        );

        let mut writer = GgufStreamWriter::new(Vec::new(), &metadata(), &specs).unwrap();
        writer.write_data(&[0; 24]).unwrap();
        writer.write_data(&[0; 102]).unwrap();
        let err = writer.write_data(&[0]).unwrap_err().to_string();
        assert!(err.contains("after the last tensor"), "{err}");
    }

    #[test]
    fn a_bad_header_is_refused_before_anything_is_written() {
        let specs = vec![TensorSpec::new("odd", GgmlType::Q4_0, &[33])];
        let mut out = Vec::new();
        assert!(GgufStreamWriter::new(&mut out, &metadata(), &specs).is_err());
        assert!(out.is_empty());
    }
}

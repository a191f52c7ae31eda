//! A little-endian cursor over a byte slice that never reads past its end.
//!
//! Reads return [`Short`] (how many bytes were wanted and where) rather than a full error, so
//! the hot path (tens of thousands of vocabulary strings) builds no message; the caller names
//! what it was reading only when a read fails, through [`ShortExt::what`].

use crate::error::FormatError;

/// A read that wanted more bytes than remain.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Short {
    pub offset: u64,
    pub needed: u64,
    pub available: u64,
}

pub(crate) trait ShortExt<T> {
    /// Turns a short read into [`FormatError::Truncated`] naming `what` was being read.
    fn what(self, what: impl FnOnce() -> String) -> Result<T, FormatError>;
}

impl<T> ShortExt<T> for Result<T, Short> {
    fn what(self, what: impl FnOnce() -> String) -> Result<T, FormatError> {
        self.map_err(|short| FormatError::Truncated {
            what: what(),
            offset: short.offset,
            needed: short.needed,
            available: short.available,
        })
    }
}

pub(crate) struct ByteReader<'a> {
    bytes: &'a [u8],
    /// Index of the next unread byte; never beyond `bytes.len()`.
    pos: usize,
}

impl<'a> ByteReader<'a> {
    pub fn new(bytes: &'a [u8]) -> ByteReader<'a> {
        ByteReader { bytes, pos: 0 }
    }

    /// Byte offset of the next read from the start of the slice.
    pub fn offset(&self) -> u64 {
        self.pos as u64
    }

    /// Bytes left to read.
    pub fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    /// The next `n` bytes, or `Short` (and no movement) if fewer remain. `n` is u64 because
    /// lengths come straight from the file and may not fit in usize.
    pub fn take(&mut self, n: u64) -> Result<&'a [u8], Short> {
        let short = Short {
            offset: self.offset(),
            needed: n,
            available: self.remaining(),
        };
        if n > self.remaining() {
            return Err(short);
        }
        // n <= remaining <= usize::MAX, so the conversion and the addition cannot fail.
        let end = self.pos + n as usize;
        let out = self.bytes.get(self.pos..end).ok_or(short)?;
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Short> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, Short> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, Short> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, Short> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, Short> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A GGUF string: u64 byte length, then that many bytes of UTF-8 (no NUL).
    /// `what` names the string in errors (truncation, bad UTF-8).
    pub fn string(&mut self, what: impl Fn() -> String) -> Result<&'a str, FormatError> {
        let len = self.u64().what(|| format!("length of {}", what()))?;
        let start = self.offset();
        let bytes = self.take(len).what(&what)?;
        std::str::from_utf8(bytes).map_err(|_| FormatError::InvalidUtf8 {
            what: what(),
            offset: start,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_and_stops_at_the_end() {
        let bytes = [1u8, 2, 3, 4, 5, 6, 7];
        let mut r = ByteReader::new(&bytes);
        assert_eq!(r.u16().unwrap(), 0x0201);
        assert_eq!(r.u32().unwrap(), 0x0605_0403);
        let short = r.u32().unwrap_err();
        assert_eq!((short.offset, short.needed, short.available), (6, 4, 1));
        assert_eq!(r.u8().unwrap(), 7);
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn huge_lengths_fail_without_moving() {
        let mut r = ByteReader::new(&[0u8; 3]);
        assert!(r.take(u64::MAX).is_err());
        assert_eq!(r.offset(), 0);
    }

    #[test]
    fn string_names_itself_in_errors() {
        let mut bytes = 2u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe]);
        let e = ByteReader::new(&bytes)
            .string(|| "key #0".to_string())
            .unwrap_err();
        assert_eq!(e.to_string(), "key #0 at byte offset 8 is not valid UTF-8");
    }
}

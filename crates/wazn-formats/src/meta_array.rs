//! GGUF metadata arrays as compact typed vectors.
//!
//! A GGUF array is homogeneous: one element type, then that many values. Keeping it as one
//! typed `Vec` (a `u8` array as `Vec<u8>`, not one boxed value per element) keeps the memory of
//! a parsed file proportional to its size: a hostile file with a 100 MB array costs about
//! 100 MB, not the 3.2 GB that 32-byte enum elements would. It also makes a mixed-type array
//! impossible to build, so the writer needs no check for one, and it keeps the element type of
//! an empty array, so such an array round-trips byte for byte.

use std::iter::FusedIterator;
use std::mem::size_of;

use serde::{Serialize, Serializer};

use crate::metadata::{MetaValue, ValueType};

/// A metadata array: its element type and its elements. Arrays of arrays are legal GGUF, and
/// each inner array has its own element type.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    Array(Vec<MetaArray>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

/// Applies `$body` to the vector inside any variant of `$array`, bound to `$v`.
macro_rules! each_variant {
    ($array:expr, $v:ident => $body:expr) => {
        match $array {
            MetaArray::U8($v) => $body,
            MetaArray::I8($v) => $body,
            MetaArray::U16($v) => $body,
            MetaArray::I16($v) => $body,
            MetaArray::U32($v) => $body,
            MetaArray::I32($v) => $body,
            MetaArray::F32($v) => $body,
            MetaArray::Bool($v) => $body,
            MetaArray::String($v) => $body,
            MetaArray::Array($v) => $body,
            MetaArray::U64($v) => $body,
            MetaArray::I64($v) => $body,
            MetaArray::F64($v) => $body,
        }
    };
}

impl MetaArray {
    /// An array with no elements of type `element_type`.
    pub fn empty(element_type: ValueType) -> MetaArray {
        match element_type {
            ValueType::U8 => MetaArray::U8(Vec::new()),
            ValueType::I8 => MetaArray::I8(Vec::new()),
            ValueType::U16 => MetaArray::U16(Vec::new()),
            ValueType::I16 => MetaArray::I16(Vec::new()),
            ValueType::U32 => MetaArray::U32(Vec::new()),
            ValueType::I32 => MetaArray::I32(Vec::new()),
            ValueType::F32 => MetaArray::F32(Vec::new()),
            ValueType::Bool => MetaArray::Bool(Vec::new()),
            ValueType::String => MetaArray::String(Vec::new()),
            ValueType::Array => MetaArray::Array(Vec::new()),
            ValueType::U64 => MetaArray::U64(Vec::new()),
            ValueType::I64 => MetaArray::I64(Vec::new()),
            ValueType::F64 => MetaArray::F64(Vec::new()),
        }
    }

    /// The type of every element, as written in the file (even when there are none).
    pub fn element_type(&self) -> ValueType {
        match self {
            MetaArray::U8(_) => ValueType::U8,
            MetaArray::I8(_) => ValueType::I8,
            MetaArray::U16(_) => ValueType::U16,
            MetaArray::I16(_) => ValueType::I16,
            MetaArray::U32(_) => ValueType::U32,
            MetaArray::I32(_) => ValueType::I32,
            MetaArray::F32(_) => ValueType::F32,
            MetaArray::Bool(_) => ValueType::Bool,
            MetaArray::String(_) => ValueType::String,
            MetaArray::Array(_) => ValueType::Array,
            MetaArray::U64(_) => ValueType::U64,
            MetaArray::I64(_) => ValueType::I64,
            MetaArray::F64(_) => ValueType::F64,
        }
    }

    pub fn len(&self) -> usize {
        each_variant!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `index` as an owned value; `None` past the end. A scalar is a cheap copy (a
    /// string is cloned); an inner array is cloned whole, so walk `MetaArray::Array` directly
    /// where its arrays may be large.
    pub fn get(&self, index: usize) -> Option<MetaValue> {
        Some(match self {
            MetaArray::U8(v) => MetaValue::U8(*v.get(index)?),
            MetaArray::I8(v) => MetaValue::I8(*v.get(index)?),
            MetaArray::U16(v) => MetaValue::U16(*v.get(index)?),
            MetaArray::I16(v) => MetaValue::I16(*v.get(index)?),
            MetaArray::U32(v) => MetaValue::U32(*v.get(index)?),
            MetaArray::I32(v) => MetaValue::I32(*v.get(index)?),
            MetaArray::F32(v) => MetaValue::F32(*v.get(index)?),
            MetaArray::Bool(v) => MetaValue::Bool(*v.get(index)?),
            MetaArray::String(v) => MetaValue::String(v.get(index)?.clone()),
            MetaArray::Array(v) => MetaValue::Array(v.get(index)?.clone()),
            MetaArray::U64(v) => MetaValue::U64(*v.get(index)?),
            MetaArray::I64(v) => MetaValue::I64(*v.get(index)?),
            MetaArray::F64(v) => MetaValue::F64(*v.get(index)?),
        })
    }

    /// The elements in order as owned values (see [`MetaArray::get`] for the cost).
    pub fn iter(&self) -> MetaArrayIter<'_> {
        MetaArrayIter {
            array: self,
            next: 0,
        }
    }

    /// Bytes this array holds on the heap (its vectors' capacity, strings and inner arrays
    /// included), to hold the memory of parsed metadata to the size of its file.
    pub fn heap_bytes(&self) -> usize {
        fn vec_bytes<T>(v: &Vec<T>) -> usize {
            v.capacity() * size_of::<T>()
        }
        match self {
            MetaArray::String(v) => vec_bytes(v) + v.iter().map(String::capacity).sum::<usize>(),
            MetaArray::Array(v) => {
                vec_bytes(v) + v.iter().map(MetaArray::heap_bytes).sum::<usize>()
            }
            other => each_variant!(other, v => vec_bytes(v)),
        }
    }

    /// "ARRAY of STRING", "ARRAY of ARRAY of UINT8" (nested arrays named by their first), for
    /// error messages.
    pub fn describe(&self) -> String {
        match self {
            MetaArray::Array(inner) => match inner.first() {
                Some(first) => format!("ARRAY of {}", first.describe()),
                None => "ARRAY of ARRAY".to_string(),
            },
            other => format!("ARRAY of {}", other.element_type().name()),
        }
    }
}

/// The elements of a [`MetaArray`] as owned [`MetaValue`]s.
#[derive(Clone, Debug)]
pub struct MetaArrayIter<'a> {
    array: &'a MetaArray,
    next: usize,
}

impl Iterator for MetaArrayIter<'_> {
    type Item = MetaValue;

    fn next(&mut self) -> Option<MetaValue> {
        let item = self.array.get(self.next)?;
        self.next += 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.array.len().saturating_sub(self.next);
        (left, Some(left))
    }
}

impl ExactSizeIterator for MetaArrayIter<'_> {}

impl FusedIterator for MetaArrayIter<'_> {}

impl<'a> IntoIterator for &'a MetaArray {
    type Item = MetaValue;
    type IntoIter = MetaArrayIter<'a>;

    fn into_iter(self) -> MetaArrayIter<'a> {
        self.iter()
    }
}

/// A JSON list of the elements, as when each element was its own value.
impl Serialize for MetaArray {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        each_variant!(self, v => v.serialize(serializer))
    }
}

macro_rules! meta_array_from {
    ($($t:ty => $variant:ident),* $(,)?) => {
        $(impl From<Vec<$t>> for MetaArray {
            fn from(v: Vec<$t>) -> MetaArray {
                MetaArray::$variant(v)
            }
        })*
    };
}

meta_array_from!(
    u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, f32 => F32,
    bool => Bool, String => String, MetaArray => Array, u64 => U64, i64 => I64, f64 => F64,
);

impl From<Vec<&str>> for MetaArray {
    fn from(v: Vec<&str>) -> MetaArray {
        MetaArray::String(v.into_iter().map(str::to_string).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_come_out_as_values() {
        let a = MetaArray::from(vec![1u16, 2, 3]);
        assert_eq!((a.len(), a.element_type()), (3, ValueType::U16));
        assert_eq!(a.get(1), Some(MetaValue::U16(2)));
        assert_eq!(a.get(3), None);
        let all: Vec<MetaValue> = a.iter().collect();
        assert_eq!(
            all,
            [MetaValue::U16(1), MetaValue::U16(2), MetaValue::U16(3)]
        );
        assert_eq!(a.iter().len(), 3);

        let nested = MetaArray::from(vec![MetaArray::from(vec!["x"])]);
        assert_eq!(
            nested.get(0),
            Some(MetaValue::Array(MetaArray::String(vec!["x".to_string()])))
        );
        assert_eq!(nested.describe(), "ARRAY of ARRAY of STRING");
    }

    #[test]
    fn an_empty_array_keeps_its_type() {
        for t in (0..=12).filter_map(ValueType::from_id) {
            let a = MetaArray::empty(t);
            assert_eq!(a.element_type(), t);
            assert!(a.is_empty());
            assert_eq!(a.get(0), None);
        }
        assert_eq!(
            MetaArray::empty(ValueType::F32).describe(),
            "ARRAY of FLOAT32"
        );
        assert_eq!(
            MetaArray::empty(ValueType::Array).describe(),
            "ARRAY of ARRAY"
        );
    }

    #[test]
    fn heap_bytes_counts_strings_and_inner_arrays() {
        let bytes = MetaArray::from(vec![0u8; 1000]);
        assert_eq!(bytes.heap_bytes(), 1000);
        let floats = MetaArray::from(vec![0f64; 10]);
        assert_eq!(floats.heap_bytes(), 80);
        let strings = MetaArray::from(vec!["abcd".to_string(); 2]);
        assert_eq!(strings.heap_bytes(), 2 * size_of::<String>() + 2 * 4);
        let nested = MetaArray::from(vec![bytes.clone(), bytes]);
        assert_eq!(nested.heap_bytes(), 2 * size_of::<MetaArray>() + 2000);
    }

    #[test]
    fn serializes_as_a_json_list() {
        let nested = MetaArray::from(vec![
            MetaArray::from(vec![true, false]),
            MetaArray::empty(ValueType::U8),
            MetaArray::from(vec![-1i8]),
        ]);
        let json = serde_json::to_string(&nested).unwrap();
        assert_eq!(json, "[[true,false],[],[-1]]");
        let floats = serde_json::to_string(&MetaArray::from(vec![0.5f32, -2.0])).unwrap();
        assert_eq!(floats, "[0.5,-2.0]");
    }
}

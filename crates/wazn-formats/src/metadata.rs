//! GGUF metadata: typed values and an insertion-ordered key → value map with typed getters.
//!
//! Getters are lenient about integer width (files use u32 or u64 for the same count) but strict
//! about kind: asking for a string where the file has a number is an error naming the key.

use std::collections::HashMap;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::error::FormatError;
use crate::meta_array::MetaArray;

/// A GGUF metadata value type, by its id in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    pub fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    pub fn id(self) -> u32 {
        self as u32
    }

    /// The name gguf-py gives this type (`GGUFValueType`).
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "UINT8",
            I8 => "INT8",
            U16 => "UINT16",
            I16 => "INT16",
            U32 => "UINT32",
            I32 => "INT32",
            F32 => "FLOAT32",
            Bool => "BOOL",
            String => "STRING",
            Array => "ARRAY",
            U64 => "UINT64",
            I64 => "INT64",
            F64 => "FLOAT64",
        }
    }

    /// The fewest bytes one value of this type takes in a file: a string is at least its
    /// u64 length, an array at least its u32 element type and u64 count.
    pub fn min_encoded_bytes(self) -> u64 {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }

    /// One of the eight integer types.
    pub(crate) fn is_integer(self) -> bool {
        use ValueType::*;
        matches!(self, U8 | I8 | U16 | I16 | U32 | I32 | U64 | I64)
    }

    /// An integer or a float type.
    pub(crate) fn is_number(self) -> bool {
        self.is_integer() || matches!(self, ValueType::F32 | ValueType::F64)
    }
}

/// One metadata value. An array is a [`MetaArray`]: one typed vector, homogeneous by
/// construction as in a file.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(MetaArray),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl MetaValue {
    pub fn value_type(&self) -> ValueType {
        match self {
            MetaValue::U8(_) => ValueType::U8,
            MetaValue::I8(_) => ValueType::I8,
            MetaValue::U16(_) => ValueType::U16,
            MetaValue::I16(_) => ValueType::I16,
            MetaValue::U32(_) => ValueType::U32,
            MetaValue::I32(_) => ValueType::I32,
            MetaValue::F32(_) => ValueType::F32,
            MetaValue::Bool(_) => ValueType::Bool,
            MetaValue::String(_) => ValueType::String,
            MetaValue::Array(_) => ValueType::Array,
            MetaValue::U64(_) => ValueType::U64,
            MetaValue::I64(_) => ValueType::I64,
            MetaValue::F64(_) => ValueType::F64,
        }
    }

    /// gguf-py's name of the type: "UINT32", "STRING", "ARRAY", ...
    pub fn type_name(&self) -> &'static str {
        self.value_type().name()
    }

    /// The value as i128 if it is any integer type (wide enough for every one of them).
    pub(crate) fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            MetaValue::U8(v) => v.into(),
            MetaValue::I8(v) => v.into(),
            MetaValue::U16(v) => v.into(),
            MetaValue::I16(v) => v.into(),
            MetaValue::U32(v) => v.into(),
            MetaValue::I32(v) => v.into(),
            MetaValue::U64(v) => v.into(),
            MetaValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// Any integer type holding a non-negative value.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_i128().and_then(|v| u64::try_from(v).ok())
    }

    /// Any integer type holding a value that fits in i64.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_i128().and_then(|v| i64::try_from(v).ok())
    }

    /// F32, F64 (rounded) or any integer (converted).
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            MetaValue::F32(v) => Some(v),
            MetaValue::F64(v) => Some(v as f32),
            _ => self.as_i128().map(|v| v as f32),
        }
    }

    /// F32, F64 or any integer (converted).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v.into()),
            MetaValue::F64(v) => Some(v),
            _ => self.as_i128().map(|v| v as f64),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&MetaArray> {
        match self {
            MetaValue::Array(items) => Some(items),
            _ => None,
        }
    }

    /// "UINT32", "ARRAY of STRING" style description, for error messages.
    fn describe(&self) -> String {
        match self {
            MetaValue::Array(items) => items.describe(),
            other => other.type_name().to_string(),
        }
    }
}

impl Serialize for MetaValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            MetaValue::U8(v) => serializer.serialize_u8(*v),
            MetaValue::I8(v) => serializer.serialize_i8(*v),
            MetaValue::U16(v) => serializer.serialize_u16(*v),
            MetaValue::I16(v) => serializer.serialize_i16(*v),
            MetaValue::U32(v) => serializer.serialize_u32(*v),
            MetaValue::I32(v) => serializer.serialize_i32(*v),
            MetaValue::F32(v) => serializer.serialize_f32(*v),
            MetaValue::Bool(v) => serializer.serialize_bool(*v),
            MetaValue::String(v) => serializer.serialize_str(v),
            MetaValue::U64(v) => serializer.serialize_u64(*v),
            MetaValue::I64(v) => serializer.serialize_i64(*v),
            MetaValue::F64(v) => serializer.serialize_f64(*v),
            MetaValue::Array(items) => items.serialize(serializer),
        }
    }
}

macro_rules! meta_value_from {
    ($($t:ty => $variant:ident),* $(,)?) => {
        $(impl From<$t> for MetaValue {
            fn from(v: $t) -> MetaValue {
                MetaValue::$variant(v)
            }
        })*
    };
}

meta_value_from!(
    u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, f32 => F32,
    bool => Bool, String => String, u64 => U64, i64 => I64, f64 => F64,
);

impl From<&str> for MetaValue {
    fn from(v: &str) -> MetaValue {
        MetaValue::String(v.to_string())
    }
}

impl From<MetaArray> for MetaValue {
    fn from(items: MetaArray) -> MetaValue {
        MetaValue::Array(items)
    }
}

/// A vector of any type a [`MetaArray`] holds: `vec!["a", "b"]`, `vec![1i32, 2]`, ...
impl<T> From<Vec<T>> for MetaValue
where
    Vec<T>: Into<MetaArray>,
{
    fn from(items: Vec<T>) -> MetaValue {
        MetaValue::Array(items.into())
    }
}

/// Metadata in file order, with lookup by key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, MetaValue)>,
    index: HashMap<String, usize>,
}

impl Metadata {
    pub fn new() -> Metadata {
        Metadata::default()
    }

    /// Appends an entry; a key already present is an error, as in a file.
    pub fn insert(
        &mut self,
        key: impl Into<String>,
        value: impl Into<MetaValue>,
    ) -> Result<(), FormatError> {
        let key = key.into();
        if self.index.contains_key(&key) {
            return Err(FormatError::DuplicateKey { key });
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value.into()));
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// Entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &MetaValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Applies `convert` to the value of `key` if present; `None` from it is a type error.
    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &'static str,
        convert: impl FnOnce(&'a MetaValue) -> Option<T>,
    ) -> Result<Option<T>, FormatError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        match convert(value) {
            Some(v) => Ok(Some(v)),
            None => Err(wrong_type(key, expected, value)),
        }
    }

    pub fn get_str(&self, key: &str) -> Result<Option<&str>, FormatError> {
        self.typed(key, "STRING", MetaValue::as_str)
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, FormatError> {
        self.typed(key, "BOOL", MetaValue::as_bool)
    }

    /// Any float or integer type.
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>, FormatError> {
        self.typed(key, "a number", MetaValue::as_f32)
    }

    /// Any integer type; a negative value is out of range.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, FormatError> {
        self.get_int(key, "u64", |v| u64::try_from(v).ok())
    }

    /// Any integer type; a value above u32::MAX or below 0 is out of range.
    pub fn get_u32(&self, key: &str) -> Result<Option<u32>, FormatError> {
        self.get_int(key, "u32", |v| u32::try_from(v).ok())
    }

    /// Any integer type; a value outside i64 is out of range.
    pub fn get_i64(&self, key: &str) -> Result<Option<i64>, FormatError> {
        self.get_int(key, "i64", |v| i64::try_from(v).ok())
    }

    fn get_int<T>(
        &self,
        key: &str,
        target: &'static str,
        narrow: impl FnOnce(i128) -> Option<T>,
    ) -> Result<Option<T>, FormatError> {
        let Some(wide) = self.typed(key, "an integer", MetaValue::as_i128)? else {
            return Ok(None);
        };
        match narrow(wide) {
            Some(v) => Ok(Some(v)),
            None => Err(FormatError::ValueOutOfRange {
                key: key.to_string(),
                value: wide.to_string(),
                target,
            }),
        }
    }

    /// An array value, with a type error if the value is not an array.
    fn array(&self, key: &str, expected: &'static str) -> Result<Option<&MetaArray>, FormatError> {
        self.typed(key, expected, MetaValue::as_array)
    }

    /// An array of an element type that `accepts`, each element turned into a `T` by
    /// `convert` (`Ok(None)`: not of the kind asked for). An empty array of any type is
    /// accepted as empty: it holds no element of the wrong kind, and older writers gave every
    /// empty array the type UINT8.
    fn converted_array<T>(
        &self,
        key: &str,
        expected: &'static str,
        accepts: impl FnOnce(ValueType) -> bool,
        mut convert: impl FnMut(MetaValue) -> Result<Option<T>, FormatError>,
    ) -> Result<Option<Vec<T>>, FormatError> {
        let Some(items) = self.array(key, expected)? else {
            return Ok(None);
        };
        // Checked before walking, so that no element (an inner array) is copied in vain.
        if !items.is_empty() && !accepts(items.element_type()) {
            return Err(wrong_array(key, expected, items));
        }
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match convert(item)? {
                Some(v) => out.push(v),
                None => return Err(wrong_array(key, expected, items)),
            }
        }
        Ok(Some(out))
    }

    pub fn get_str_array(&self, key: &str) -> Result<Option<Vec<&str>>, FormatError> {
        const EXPECTED: &str = "ARRAY of STRING";
        match self.array(key, EXPECTED)? {
            None => Ok(None),
            Some(MetaArray::String(items)) => Ok(Some(items.iter().map(String::as_str).collect())),
            // See `converted_array` on empty arrays of another type.
            Some(items) if items.is_empty() => Ok(Some(Vec::new())),
            Some(items) => Err(wrong_array(key, EXPECTED, items)),
        }
    }

    /// An array of any integer type whose values all fit in i32.
    pub fn get_i32_array(&self, key: &str) -> Result<Option<Vec<i32>>, FormatError> {
        const EXPECTED: &str = "ARRAY of integers";
        self.converted_array(key, EXPECTED, ValueType::is_integer, |item| {
            let Some(wide) = item.as_i128() else {
                return Ok(None);
            };
            match i32::try_from(wide) {
                Ok(v) => Ok(Some(v)),
                Err(_) => Err(FormatError::ValueOutOfRange {
                    key: key.to_string(),
                    value: wide.to_string(),
                    target: "i32",
                }),
            }
        })
    }

    /// An array of floats or integers.
    pub fn get_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>, FormatError> {
        const EXPECTED: &str = "ARRAY of numbers";
        self.converted_array(
            key,
            EXPECTED,
            ValueType::is_number,
            |item| Ok(item.as_f32()),
        )
    }

    /// An array of BOOL.
    pub fn get_bool_array(&self, key: &str) -> Result<Option<Vec<bool>>, FormatError> {
        const EXPECTED: &str = "ARRAY of BOOL";
        self.converted_array(
            key,
            EXPECTED,
            |t| t == ValueType::Bool,
            |item| Ok(item.as_bool()),
        )
    }

    pub fn require_u64(&self, key: &str) -> Result<u64, FormatError> {
        self.get_u64(key)?.ok_or_else(|| missing(key))
    }

    pub fn require_u32(&self, key: &str) -> Result<u32, FormatError> {
        self.get_u32(key)?.ok_or_else(|| missing(key))
    }

    pub fn require_str(&self, key: &str) -> Result<&str, FormatError> {
        self.get_str(key)?.ok_or_else(|| missing(key))
    }

    pub fn require_f32(&self, key: &str) -> Result<f32, FormatError> {
        self.get_f32(key)?.ok_or_else(|| missing(key))
    }

    pub fn require_bool(&self, key: &str) -> Result<bool, FormatError> {
        self.get_bool(key)?.ok_or_else(|| missing(key))
    }
}

fn missing(key: &str) -> FormatError {
    FormatError::MissingKey {
        key: key.to_string(),
    }
}

/// An array whose elements are of the wrong kind.
fn wrong_array(key: &str, expected: &'static str, found: &MetaArray) -> FormatError {
    FormatError::WrongType {
        key: key.to_string(),
        expected,
        found: found.describe(),
    }
}

fn wrong_type(key: &str, expected: &'static str, found: &MetaValue) -> FormatError {
    FormatError::WrongType {
        key: key.to_string(),
        expected,
        found: found.describe(),
    }
}

/// A JSON object in file order.
impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (key, value) in &self.entries {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Metadata {
        let mut m = Metadata::new();
        m.insert("count_u32", 7u32).unwrap();
        m.insert("count_u64", 9u64).unwrap();
        m.insert("neg", -3i32).unwrap();
        m.insert("big", u64::MAX).unwrap();
        m.insert("eps", 1e-5f32).unwrap();
        m.insert("name", "llama").unwrap();
        m.insert("flag", true).unwrap();
        m.insert("tokens", vec!["a", "b"]).unwrap();
        m.insert("types", vec![1i32, 3]).unwrap();
        m.insert("wide_types", vec![1u64 << 40]).unwrap();
        m.insert("scores", vec![0.5f32, -1.0]).unwrap();
        m.insert("flags", vec![true, false]).unwrap();
        m.insert("none", MetaArray::empty(ValueType::U8)).unwrap();
        m.insert("pairs", vec![MetaArray::from(vec![1u8, 2])])
            .unwrap();
        m
    }

    #[test]
    fn integers_of_any_width_are_accepted() {
        let m = sample();
        assert_eq!(m.get_u64("count_u32").unwrap(), Some(7));
        assert_eq!(m.get_u32("count_u64").unwrap(), Some(9));
        assert_eq!(m.get_i64("neg").unwrap(), Some(-3));
        assert_eq!(m.get_f32("count_u32").unwrap(), Some(7.0));
        assert_eq!(m.get_u64("missing").unwrap(), None);
    }

    #[test]
    fn out_of_range_and_wrong_type_name_the_key() {
        let m = sample();
        let e = m.get_u64("neg").unwrap_err().to_string();
        assert_eq!(e, "metadata key \"neg\": value -3 does not fit in u64");
        let e = m.get_u32("big").unwrap_err().to_string();
        assert!(e.contains("\"big\"") && e.contains("u32"), "{e}");
        let e = m.get_str("count_u32").unwrap_err().to_string();
        assert_eq!(
            e,
            "metadata key \"count_u32\" has type UINT32, expected STRING"
        );
        let e = m.get_str_array("types").unwrap_err().to_string();
        assert_eq!(
            e,
            "metadata key \"types\" has type ARRAY of INT32, expected ARRAY of STRING"
        );
        let e = m.get_i32_array("wide_types").unwrap_err().to_string();
        assert!(e.contains("1099511627776") && e.contains("i32"), "{e}");
        let e = m.require_u64("absent").unwrap_err().to_string();
        assert_eq!(e, "metadata key \"absent\" is missing");
    }

    #[test]
    fn arrays_convert() {
        let m = sample();
        assert_eq!(m.get_str_array("tokens").unwrap(), Some(vec!["a", "b"]));
        assert_eq!(m.get_i32_array("types").unwrap(), Some(vec![1, 3]));
        assert_eq!(m.get_f32_array("scores").unwrap(), Some(vec![0.5, -1.0]));
        assert_eq!(m.get_f32_array("types").unwrap(), Some(vec![1.0, 3.0]));
        assert_eq!(m.get_bool_array("flags").unwrap(), Some(vec![true, false]));
        assert_eq!(m.get_bool_array("absent").unwrap(), None);
    }

    #[test]
    fn an_empty_array_of_any_type_is_empty_for_every_getter() {
        let m = sample();
        assert_eq!(m.get_str_array("none").unwrap(), Some(vec![]));
        assert_eq!(m.get_i32_array("none").unwrap(), Some(vec![]));
        assert_eq!(m.get_f32_array("none").unwrap(), Some(vec![]));
        assert_eq!(m.get_bool_array("none").unwrap(), Some(vec![]));
    }

    #[test]
    fn array_type_errors_name_the_element_type() {
        let m = sample();
        let cases = [
            (
                m.get_bool_array("types").map(|_| ()),
                "\"types\" has type ARRAY of INT32, expected ARRAY of BOOL",
            ),
            (
                m.get_i32_array("scores").map(|_| ()),
                "\"scores\" has type ARRAY of FLOAT32, expected ARRAY of integers",
            ),
            (
                m.get_f32_array("tokens").map(|_| ()),
                "\"tokens\" has type ARRAY of STRING, expected ARRAY of numbers",
            ),
            (
                m.get_str_array("pairs").map(|_| ()),
                "\"pairs\" has type ARRAY of ARRAY of UINT8, expected ARRAY of STRING",
            ),
            (
                m.get_str("flags").map(|_| ()),
                "\"flags\" has type ARRAY of BOOL, expected STRING",
            ),
        ];
        for (result, message) in cases {
            let e = result.unwrap_err().to_string();
            assert_eq!(e, format!("metadata key {message}"));
        }
    }

    #[test]
    fn duplicate_insert_is_an_error() {
        let mut m = sample();
        let e = m.insert("flag", false).unwrap_err();
        assert!(matches!(e, FormatError::DuplicateKey { ref key } if key == "flag"));
        assert_eq!(m.get_bool("flag").unwrap(), Some(true));
    }

    #[test]
    fn serializes_as_ordered_json() {
        let mut m = Metadata::new();
        m.insert("z", 1u8).unwrap();
        m.insert("a", vec!["x", "y"]).unwrap();
        m.insert(
            "n",
            vec![MetaArray::from(vec![1u8]), MetaArray::empty(ValueType::U8)],
        )
        .unwrap();
        m.insert("f", 0.5f64).unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"z":1,"a":["x","y"],"n":[[1],[]],"f":0.5}"#);
    }
}

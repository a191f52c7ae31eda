//! The file types a quantization run can produce (llama.cpp's `llama_ftype`): their names as
//! llama-quantize spells them, their numbers (written as `general.file_type`), and the tensor
//! type each one starts from before the mix rules move tensors up or down.

use std::fmt;

use wazn_formats::GgmlType;

use crate::error::QuantError;

/// A quantization mix, numbered as `llama_ftype` in `llama.h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum FileType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K_S,
    Q3_K_M,
    Q3_K_L,
    Q4_K_S,
    Q4_K_M,
    Q5_K_S,
    Q5_K_M,
    Q6_K,
    MXFP4_MOE,
}

/// One name llama-quantize accepts, in the order of its `QUANT_OPTIONS` (a number is looked
/// up in this order too, so 12 reads as its first name, the alias "Q3_K").
struct Name {
    name: &'static str,
    file_type: FileType,
}

const fn name(name: &'static str, file_type: FileType) -> Name {
    Name { name, file_type }
}

const NAMES: [Name; 21] = [
    name("Q4_0", FileType::Q4_0),
    name("Q4_1", FileType::Q4_1),
    name("MXFP4_MOE", FileType::MXFP4_MOE),
    name("Q5_0", FileType::Q5_0),
    name("Q5_1", FileType::Q5_1),
    name("Q2_K", FileType::Q2_K),
    name("Q3_K", FileType::Q3_K_M),
    name("Q3_K_S", FileType::Q3_K_S),
    name("Q3_K_M", FileType::Q3_K_M),
    name("Q3_K_L", FileType::Q3_K_L),
    name("Q4_K", FileType::Q4_K_M),
    name("Q4_K_S", FileType::Q4_K_S),
    name("Q4_K_M", FileType::Q4_K_M),
    name("Q5_K", FileType::Q5_K_M),
    name("Q5_K_S", FileType::Q5_K_S),
    name("Q5_K_M", FileType::Q5_K_M),
    name("Q6_K", FileType::Q6_K),
    name("Q8_0", FileType::Q8_0),
    name("F16", FileType::F16),
    name("BF16", FileType::BF16),
    name("F32", FileType::F32),
];

/// Names llama-quantize knows that wazn does not write (the i-quants need an importance
/// matrix or quantizers wazn lacks; COPY and the newest types are not implemented): they get
/// their own error rather than "unknown".
const NOT_YET: [&str; 19] = [
    "Q1_0", "Q2_0", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M", "TQ1_0", "TQ2_0",
    "Q2_K_S", "IQ3_XXS", "IQ3_S", "IQ3_M", "IQ3_XS", "IQ4_NL", "IQ4_XS", "COPY", "NVFP4",
];

impl FileType {
    /// Every file type, in `llama_ftype` order.
    pub const ALL: [FileType; 18] = [
        FileType::F32,
        FileType::F16,
        FileType::Q4_0,
        FileType::Q4_1,
        FileType::Q8_0,
        FileType::Q5_0,
        FileType::Q5_1,
        FileType::Q2_K,
        FileType::Q3_K_S,
        FileType::Q3_K_M,
        FileType::Q3_K_L,
        FileType::Q4_K_S,
        FileType::Q4_K_M,
        FileType::Q5_K_S,
        FileType::Q5_K_M,
        FileType::Q6_K,
        FileType::BF16,
        FileType::MXFP4_MOE,
    ];

    /// The `llama_ftype` number, written as `general.file_type`.
    pub fn id(self) -> u32 {
        match self {
            FileType::F32 => 0,
            FileType::F16 => 1,
            FileType::Q4_0 => 2,
            FileType::Q4_1 => 3,
            FileType::Q8_0 => 7,
            FileType::Q5_0 => 8,
            FileType::Q5_1 => 9,
            FileType::Q2_K => 10,
            FileType::Q3_K_S => 11,
            FileType::Q3_K_M => 12,
            FileType::Q3_K_L => 13,
            FileType::Q4_K_S => 14,
            FileType::Q4_K_M => 15,
            FileType::Q5_K_S => 16,
            FileType::Q5_K_M => 17,
            FileType::Q6_K => 18,
            FileType::BF16 => 32,
            FileType::MXFP4_MOE => 38,
        }
    }

    /// The canonical name ("Q4_K_M", "MXFP4_MOE").
    pub fn name(self) -> &'static str {
        match self {
            FileType::F32 => "F32",
            FileType::F16 => "F16",
            FileType::BF16 => "BF16",
            FileType::Q4_0 => "Q4_0",
            FileType::Q4_1 => "Q4_1",
            FileType::Q5_0 => "Q5_0",
            FileType::Q5_1 => "Q5_1",
            FileType::Q8_0 => "Q8_0",
            FileType::Q2_K => "Q2_K",
            FileType::Q3_K_S => "Q3_K_S",
            FileType::Q3_K_M => "Q3_K_M",
            FileType::Q3_K_L => "Q3_K_L",
            FileType::Q4_K_S => "Q4_K_S",
            FileType::Q4_K_M => "Q4_K_M",
            FileType::Q5_K_S => "Q5_K_S",
            FileType::Q5_K_M => "Q5_K_M",
            FileType::Q6_K => "Q6_K",
            FileType::MXFP4_MOE => "MXFP4_MOE",
        }
    }

    /// Reads a type as llama-quantize does: a name in any case ("q4_k_m", "Q4_K" for
    /// Q4_K_M), else a `llama_ftype` number ("15").
    pub fn parse(text: &str) -> Result<FileType, QuantError> {
        if let Some(n) = NAMES.iter().find(|n| n.name.eq_ignore_ascii_case(text)) {
            return Ok(n.file_type);
        }
        if let Ok(id) = text.trim().parse::<u32>() {
            if let Some(t) = FileType::ALL.into_iter().find(|t| t.id() == id) {
                return Ok(t);
            }
        }
        if let Some(known) = NOT_YET.iter().find(|n| n.eq_ignore_ascii_case(text)) {
            return Err(QuantError::TypeNotWritten {
                name: (*known).to_string(),
            });
        }
        Err(QuantError::UnknownType {
            name: text.to_string(),
            known: NAMES.iter().map(|n| n.name).collect::<Vec<_>>().join(", "),
        })
    }

    /// The type most tensors get before the mix rules (`llama_ftype_get_default_type`).
    pub fn default_type(self) -> GgmlType {
        match self {
            FileType::F32 => GgmlType::F32,
            FileType::F16 => GgmlType::F16,
            FileType::BF16 => GgmlType::BF16,
            FileType::Q4_0 => GgmlType::Q4_0,
            FileType::Q4_1 => GgmlType::Q4_1,
            FileType::Q5_0 => GgmlType::Q5_0,
            FileType::Q5_1 => GgmlType::Q5_1,
            FileType::Q8_0 => GgmlType::Q8_0,
            FileType::Q2_K => GgmlType::Q2_K,
            FileType::Q3_K_S | FileType::Q3_K_M | FileType::Q3_K_L => GgmlType::Q3_K,
            FileType::Q4_K_S | FileType::Q4_K_M => GgmlType::Q4_K,
            FileType::Q5_K_S | FileType::Q5_K_M => GgmlType::Q5_K,
            FileType::Q6_K => GgmlType::Q6_K,
            FileType::MXFP4_MOE => GgmlType::MXFP4,
        }
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_any_case_aliases_and_numbers() {
        assert_eq!(FileType::parse("q4_k_m").unwrap(), FileType::Q4_K_M);
        assert_eq!(FileType::parse("Q4_K").unwrap(), FileType::Q4_K_M);
        assert_eq!(FileType::parse("mxfp4_moe").unwrap(), FileType::MXFP4_MOE);
        assert_eq!(FileType::parse("15").unwrap(), FileType::Q4_K_M);
        assert_eq!(FileType::parse("7").unwrap(), FileType::Q8_0);
        assert_eq!(FileType::parse("0").unwrap(), FileType::F32);
        for t in FileType::ALL {
            assert_eq!(FileType::parse(t.name()).unwrap(), t);
            assert_eq!(FileType::parse(&t.id().to_string()).unwrap(), t);
        }
    }

    #[test]
    fn unknown_and_unwritten_names_are_told_apart() {
        let err = FileType::parse("Q9_X").unwrap_err().to_string();
        assert!(err.contains("Q9_X") && err.contains("Q4_K_M"), "{err}");
        let err = FileType::parse("iq2_xxs").unwrap_err().to_string();
        assert!(err.contains("IQ2_XXS") && err.contains("not"), "{err}");
        assert!(
            FileType::parse("4").is_err(),
            "ftype 4 was removed from llama.cpp"
        );
    }
}

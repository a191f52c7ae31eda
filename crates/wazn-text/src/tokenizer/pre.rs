//! Pre-tokenizers of byte-level BPE vocabularies, chosen by `tokenizer.ggml.pre`.
//!
//! A byte-level BPE vocabulary only reproduces the ids its model was trained with when the text
//! is first cut into words exactly as at training time. GGUF names that cut with a short string;
//! the table below maps each name to the split it stands for (the same regular expressions
//! llama.cpp and the models' own `tokenizer.json` use).

use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::SplitDelimiterBehavior;

use crate::TextError;

/// Llama 3's split: case-insensitive English contractions, words with at most one leading
/// non-letter, numbers in groups of up to three digits, punctuation runs, newline runs.
const LLAMA3_SPLIT: &str = concat!(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
);

/// Qwen2's split: as Llama 3's, but every digit stands alone.
const QWEN2_SPLIT: &str = concat!(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
);

/// o200k's split (GPT-4o, Llama 4): words keep their case shape and trailing contraction.
const GPT4O_SPLIT: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
);

/// DeepSeek-V3's splits, applied one after the other: numbers in groups of up to three
/// digits, runs of CJK ideographs and kana, then words, punctuation and spaces.
const DEEPSEEK3_SPLITS: &[&str] = &[
    r"\p{N}{1,3}",
    r"[一-龥぀-ゟ゠-ヿ]+",
    concat!(
        r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"##,
        r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ),
];

/// How a byte-level vocabulary cuts text into words before BPE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WordSplit {
    /// GPT-2's own regular expression (built into the byte-level pre-tokenizer).
    Gpt2,
    /// Every digit on its own first, then GPT-2's regular expression.
    DigitsThenGpt2,
    /// One regular expression in place of GPT-2's.
    Regex(&'static str),
    /// Several, each cutting the pieces the one before left.
    Regexes(&'static [&'static str]),
}

/// What a `tokenizer.ggml.pre` name implies for building the tokenizer.
#[derive(Clone, Debug)]
pub(crate) struct PrePlan {
    split: WordSplit,
    /// A word that is itself in the vocabulary becomes that token without running the merges.
    pub ignore_merges: bool,
    /// The BOS rule when the file has no `tokenizer.ggml.add_bos_token`.
    pub add_bos_default: bool,
}

/// The plan for a pre-tokenizer name; a file without the key is treated as `"default"`, as
/// llama.cpp does for files written before the key existed.
pub(crate) fn plan_for(pre: Option<&str>) -> Result<PrePlan, TextError> {
    let name = pre.unwrap_or("default");
    let plain = |split| PrePlan {
        split,
        ignore_merges: false,
        add_bos_default: false,
    };
    let plan = match name {
        "default" | "gpt2" | "gpt-2" | "phi-2" | "mpt" | "olmo" => plain(WordSplit::Gpt2),
        // llama.cpp splits off each digit before the GPT-2 expression for these vocabularies.
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
            plain(WordSplit::DigitsThenGpt2)
        }
        // llama.cpp builds these with ignore_merges and a BOS unless the file says otherwise,
        // as Meta's own tokenizer.json does.
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" => PrePlan {
            split: WordSplit::Regex(LLAMA3_SPLIT),
            ignore_merges: true,
            add_bos_default: true,
        },
        "dbrx" | "smaug-bpe" => plain(WordSplit::Regex(LLAMA3_SPLIT)),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "megrez" => plain(WordSplit::Regex(QWEN2_SPLIT)),
        "gpt-4o" | "llama4" => plain(WordSplit::Regex(GPT4O_SPLIT)),
        "deepseek-v3" => plain(WordSplit::Regexes(DEEPSEEK3_SPLITS)),
        other => return Err(TextError::UnsupportedPreTokenizer(other.to_string())),
    };
    Ok(plan)
}

/// A pre-tokenizer that isolates every match of `pattern`.
fn split(pattern: &str) -> Result<PreTokenizerWrapper, TextError> {
    Split::new(
        SplitPattern::Regex(pattern.to_string()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map(Into::into)
    .map_err(|e| TextError::Build(format!("pre-tokenizer regex: {e}")))
}

impl PrePlan {
    /// The `tokenizers` pre-tokenizer: the split, then the byte-level spelling of each word.
    pub fn pre_tokenizer(&self) -> Result<PreTokenizerWrapper, TextError> {
        // trim_offsets only moves offsets, which are not used here; true is the HF default.
        let byte_level = |use_regex| ByteLevel::new(false, true, use_regex);
        Ok(match self.split {
            WordSplit::Gpt2 => byte_level(true).into(),
            WordSplit::DigitsThenGpt2 => {
                Sequence::new(vec![Digits::new(true).into(), byte_level(true).into()]).into()
            }
            WordSplit::Regex(pattern) => {
                Sequence::new(vec![split(pattern)?, byte_level(false).into()]).into()
            }
            WordSplit::Regexes(patterns) => {
                let mut steps = patterns
                    .iter()
                    .map(|p| split(p))
                    .collect::<Result<Vec<_>, _>>()?;
                steps.push(byte_level(false).into());
                Sequence::new(steps).into()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

    use super::*;

    /// The words `pre` cuts `text` into, in byte-level spelling.
    fn words(pre: &str, text: &str) -> Vec<String> {
        let pre = plan_for(Some(pre)).unwrap().pre_tokenizer().unwrap();
        let mut s = PreTokenizedString::from(text);
        pre.pre_tokenize(&mut s).unwrap();
        s.get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(w, _, _)| w.to_string())
            .collect()
    }

    /// The pieces are those of Hugging Face `tokenizers` (Python, 0.23.3) given the same
    /// three splits and byte-level step (llama.cpp's list for `deepseek-v3`).
    #[test]
    fn deepseek_v3_cuts_numbers_cjk_and_words_in_turn() {
        assert_eq!(
            words("deepseek-v3", "Año 12345 日本語テキスト!ok"),
            [
                "AÃ±o",
                "Ġ",
                "123",
                "45",
                "Ġ",
                "æĹ¥æľ¬èªŀãĥĨãĤŃãĤ¹ãĥĪ",
                "!ok"
            ]
        );
        assert_eq!(
            words("deepseek-v3", "Hello, world!\n\n  x=1234;"),
            ["Hello", ",", "Ġworld", "!ĊĊ", "Ġ", "Ġx", "=", "123", "4", ";"]
        );
    }
}

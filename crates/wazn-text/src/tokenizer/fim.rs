//! Fill-in-the-middle: the three tokens that let a code model write what goes between a
//! prefix and a suffix (`PRE prefix SUF suffix MID`, then the model writes the middle).
//! Their ids come from GGUF's `tokenizer.ggml.fim_*_token_id` keys where the file has them,
//! else from the token texts the model families use, as llama.cpp finds them.

/// The ids of a vocabulary's fill-in-the-middle tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FimTokens {
    pub prefix: u32,
    pub suffix: u32,
    pub middle: u32,
}

/// Qwen2.5-Coder, DeepSeek-style dashes, StarCoder, CodeLlama (with and without its
/// SentencePiece space), GLM-4.
const PREFIX_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<PRE>",
    "\u{2581}<PRE>",
    "<|code_prefix|>",
];
const SUFFIX_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<SUF>",
    "\u{2581}<SUF>",
    "<|code_suffix|>",
];
const MIDDLE_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<MID>",
    "\u{2581}<MID>",
    "<|code_middle|>",
];

/// The three tokens: each from its metadata id when given, else the first vocabulary entry
/// spelled as one of its known texts (in the order of the lists above). `None` unless all
/// three are found.
pub(crate) fn find(ids: [Option<u32>; 3], tokens: &[String]) -> Option<FimTokens> {
    let by_text = |texts: &[&str]| {
        texts
            .iter()
            .find_map(|text| tokens.iter().position(|t| t == text).map(|id| id as u32))
    };
    let [prefix, suffix, middle] = ids;
    Some(FimTokens {
        prefix: prefix.or_else(|| by_text(PREFIX_TEXTS))?,
        suffix: suffix.or_else(|| by_text(SUFFIX_TEXTS))?,
        middle: middle.or_else(|| by_text(MIDDLE_TEXTS))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn found_by_text_in_each_family_spelling() {
        let starcoder = vocab(&["a", "<fim_prefix>", "<fim_middle>", "<fim_suffix>"]);
        assert_eq!(
            find([None; 3], &starcoder),
            Some(FimTokens {
                prefix: 1,
                suffix: 3,
                middle: 2
            })
        );
        let qwen = vocab(&["<|fim_middle|>", "<|fim_suffix|>", "<|fim_prefix|>"]);
        assert_eq!(
            find([None; 3], &qwen),
            Some(FimTokens {
                prefix: 2,
                suffix: 1,
                middle: 0
            })
        );
        let codellama = vocab(&["<s>", "\u{2581}<PRE>", "\u{2581}<SUF>", "\u{2581}<MID>"]);
        assert_eq!(
            find([None; 3], &codellama),
            Some(FimTokens {
                prefix: 1,
                suffix: 2,
                middle: 3
            })
        );
    }

    #[test]
    fn metadata_ids_win_and_all_three_are_needed() {
        let tokens = vocab(&[
            "<fim_prefix>",
            "<fim_suffix>",
            "<fim_middle>",
            "x",
            "y",
            "z",
        ]);
        assert_eq!(
            find([Some(3), None, Some(5)], &tokens),
            Some(FimTokens {
                prefix: 3,
                suffix: 1,
                middle: 5
            })
        );
        let partial = vocab(&["<fim_prefix>", "<fim_suffix>"]);
        assert_eq!(find([None; 3], &partial), None);
        assert_eq!(find([None; 3], &vocab(&["a", "b"])), None);
    }
}

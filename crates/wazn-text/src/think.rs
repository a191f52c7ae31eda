//! Reasoning written between `<think>` and `</think>` (Qwen3, DeepSeek-R1 and the
//! models trained like them), told apart from the answer as generated text streams in.
//!
//! The split follows vLLM's Qwen3 reasoning parser: text inside a think block is
//! reasoning, the tags themselves are dropped, and everything after `</think>` is the
//! answer. A block is open from the start when the prompt ends inside one (templates
//! of thinking models write `<think>` for the model, so it only ever writes
//! `</think>`); otherwise it opens only if the output starts with `<think>` (after
//! whitespace), and output that starts otherwise is all answer (a template that turned
//! thinking off wrote an empty block into the prompt). One choice differs from vLLM:
//! a block still open when generation stops stays reasoning when the answer is
//! returned whole, as it was when streamed (vLLM's non-streaming parser returns it as
//! content).

/// The tag that opens a think block.
pub const THINK_OPEN: &str = "<think>";
/// The tag that closes it.
pub const THINK_CLOSE: &str = "</think>";

/// Whether a prompt ends inside a think block: its last `<think>` is not closed.
pub fn prompt_opens_thinking(prompt: &str) -> bool {
    match (prompt.rfind(THINK_OPEN), prompt.rfind(THINK_CLOSE)) {
        (Some(open), Some(close)) => open > close,
        (Some(_), None) => true,
        _ => false,
    }
}

/// A piece of generated text, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ThinkPiece {
    Reasoning(String),
    Content(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace yet: waiting to see whether `<think>` comes first.
    Start,
    Reasoning,
    Content,
}

/// Splits streamed text into reasoning and answer. Text that could be the start of a
/// tag is held back until the next piece (or [`ThinkSplitter::finish`]) tells.
#[derive(Clone, Debug)]
pub struct ThinkSplitter {
    state: State,
    /// Text not yet classified.
    pending: String,
}

impl ThinkSplitter {
    /// A splitter for output that follows a prompt which (`in_reasoning`) left a think
    /// block open or not.
    pub fn new(in_reasoning: bool) -> Self {
        ThinkSplitter {
            state: if in_reasoning {
                State::Reasoning
            } else {
                State::Start
            },
            pending: String::new(),
        }
    }

    /// The pieces `text` completes, in order.
    pub fn push(&mut self, text: &str) -> Vec<ThinkPiece> {
        self.pending.push_str(text);
        let mut pieces = Vec::new();
        loop {
            match self.state {
                State::Start => {
                    let rest = self.pending.trim_start();
                    if let Some(after) = rest.strip_prefix(THINK_OPEN) {
                        self.pending = after.to_string();
                        self.state = State::Reasoning;
                    } else if THINK_OPEN.starts_with(rest) {
                        return pieces; // whitespace or a partial `<think>`: wait
                    } else {
                        self.state = State::Content;
                    }
                }
                State::Reasoning => match self.pending.find(THINK_CLOSE) {
                    Some(at) => {
                        let reasoning = self.pending[..at].to_string();
                        self.pending.drain(..at + THINK_CLOSE.len());
                        push_piece(&mut pieces, ThinkPiece::Reasoning(reasoning));
                        self.state = State::Content;
                    }
                    None => {
                        let keep = partial_tag_len(&self.pending, THINK_CLOSE);
                        let ready = self.pending.len() - keep;
                        let reasoning: String = self.pending.drain(..ready).collect();
                        push_piece(&mut pieces, ThinkPiece::Reasoning(reasoning));
                        return pieces;
                    }
                },
                State::Content => {
                    let content = std::mem::take(&mut self.pending);
                    push_piece(&mut pieces, ThinkPiece::Content(content));
                    return pieces;
                }
            }
        }
    }

    /// What is still held back, once the output has ended.
    pub fn finish(&mut self) -> Vec<ThinkPiece> {
        let rest = std::mem::take(&mut self.pending);
        let piece = match self.state {
            State::Reasoning => ThinkPiece::Reasoning(rest),
            State::Start | State::Content => ThinkPiece::Content(rest),
        };
        self.state = State::Content;
        let mut pieces = Vec::new();
        push_piece(&mut pieces, piece);
        pieces
    }
}

/// Adds `piece` unless it is empty.
fn push_piece(pieces: &mut Vec<ThinkPiece>, piece: ThinkPiece) {
    let empty = match &piece {
        ThinkPiece::Reasoning(t) | ThinkPiece::Content(t) => t.is_empty(),
    };
    if !empty {
        pieces.push(piece);
    }
}

/// The length of the longest end of `text` that begins `tag` (without being all of it).
fn partial_tag_len(text: &str, tag: &str) -> usize {
    (1..tag.len())
        .rev()
        .find(|&n| {
            text.len() >= n
                && text.is_char_boundary(text.len() - n)
                && tag.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `chunks` through a splitter and joins what it gives: (reasoning, content).
    fn split(in_reasoning: bool, chunks: &[&str]) -> (String, String) {
        let mut splitter = ThinkSplitter::new(in_reasoning);
        let mut pieces: Vec<ThinkPiece> = chunks.iter().flat_map(|c| splitter.push(c)).collect();
        pieces.extend(splitter.finish());
        let (mut reasoning, mut content) = (String::new(), String::new());
        for piece in pieces {
            match piece {
                ThinkPiece::Reasoning(t) => reasoning.push_str(&t),
                ThinkPiece::Content(t) => content.push_str(&t),
            }
        }
        (reasoning, content)
    }

    fn owned(pair: (&str, &str)) -> (String, String) {
        (pair.0.to_string(), pair.1.to_string())
    }

    #[test]
    fn a_think_block_written_by_the_model_is_reasoning() {
        // vLLM: "<think>abc</think>xyz" → reasoning "abc", content "xyz".
        let want = owned(("\nabc\n", "\n\nxyz"));
        assert_eq!(split(false, &["<think>\nabc\n</think>\n\nxyz"]), want);
        // However the text is cut into pieces, tags included.
        let text = "<think>\nabc\n</think>\n\nxyz";
        for cut in 0..text.len() {
            assert_eq!(
                split(false, &[&text[..cut], &text[cut..]]),
                want,
                "cut {cut}"
            );
        }
    }

    #[test]
    fn a_block_opened_by_the_prompt_ends_at_the_closing_tag() {
        assert!(prompt_opens_thinking("<|im_start|>assistant\n<think>\n"));
        let text = "abc</think>xyz";
        for cut in 0..text.len() {
            assert_eq!(
                split(true, &[&text[..cut], &text[cut..]]),
                owned(("abc", "xyz")),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn output_without_a_think_block_is_all_answer() {
        // Thinking turned off: the template wrote an empty block into the prompt.
        let prompt = "<|im_start|>assistant\n<think>\n\n</think>\n\n";
        assert!(!prompt_opens_thinking(prompt));
        assert_eq!(split(false, &["The answer."]), owned(("", "The answer.")));
        // A tag later in the answer is text.
        assert_eq!(
            split(false, &["Use <think>", " tags"]),
            owned(("", "Use <think> tags"))
        );
        assert_eq!(split(false, &["<thin"]), owned(("", "<thin")));
    }

    #[test]
    fn an_unterminated_block_stays_reasoning() {
        assert_eq!(
            split(false, &["<think>abc </thi"]),
            owned(("abc </thi", ""))
        );
        assert_eq!(split(true, &["abc"]), owned(("abc", "")));
    }

    #[test]
    fn multibyte_text_next_to_a_partial_tag_is_cut_on_character_boundaries() {
        assert_eq!(split(true, &["é</", "think>ü"]), owned(("é", "ü")));
    }
}

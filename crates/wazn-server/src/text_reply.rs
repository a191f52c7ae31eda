//! The chat answer of a template model, read from its generated text as it streams: a
//! thinking model's reasoning told apart from the answer (`<think>` blocks), and the answer's
//! function calls told apart from its text (the model family's call format). The pieces are
//! harmony's [`ReplyDelta`]s, so that both kinds of model answer in one shape.

use wazn_text::harmony::{AssistantReply, ReplyDelta};
use wazn_text::think::{ThinkPiece, ThinkSplitter};
use wazn_text::tool_calls::{ToolCallParser, ToolDelta, ToolFormat};

/// Generated text → reasoning, answer text and calls.
pub struct TextReply {
    think: Option<ThinkSplitter>,
    tools: Option<ToolCallParser>,
    reply: AssistantReply,
}

impl TextReply {
    /// `think`: the model writes `<think>` blocks (`Some(open)`, `open` when the prompt left
    /// one open); `tools`: the answer may call functions written in this format.
    pub fn new(think: Option<bool>, tools: Option<ToolFormat>) -> TextReply {
        TextReply {
            think: think.map(ThinkSplitter::new),
            tools: tools.map(ToolFormat::parser),
            reply: AssistantReply::default(),
        }
    }

    /// The pieces that `text`, the next generated text, completes.
    pub fn push(&mut self, text: &str) -> Vec<ReplyDelta> {
        let pieces = match &mut self.think {
            Some(think) => think.push(text),
            None => vec![ThinkPiece::Content(text.to_string())],
        };
        self.route(pieces, false)
    }

    /// The pieces held back until the end of the generation.
    pub fn finish(&mut self) -> Vec<ReplyDelta> {
        let pieces = match &mut self.think {
            Some(think) => think.finish(),
            None => Vec::new(),
        };
        self.route(pieces, true)
    }

    /// The reply so far.
    pub fn reply(&self) -> &AssistantReply {
        &self.reply
    }

    fn route(&mut self, pieces: Vec<ThinkPiece>, end: bool) -> Vec<ReplyDelta> {
        let mut deltas = Vec::new();
        for piece in pieces {
            match (piece, &mut self.tools) {
                (ThinkPiece::Reasoning(text), _) => deltas.push(ReplyDelta::Reasoning(text)),
                (ThinkPiece::Content(text), Some(tools)) => {
                    deltas.extend(tools.push(&text).into_iter().map(reply_delta));
                }
                (ThinkPiece::Content(text), None) => deltas.push(ReplyDelta::Content(text)),
            }
        }
        if let (true, Some(tools)) = (end, &mut self.tools) {
            deltas.extend(tools.finish().into_iter().map(reply_delta));
        }
        deltas.retain(
            |d| !matches!(d, ReplyDelta::Reasoning(t) | ReplyDelta::Content(t) if t.is_empty()),
        );
        for delta in &deltas {
            self.reply.apply(delta);
        }
        deltas
    }
}

fn reply_delta(delta: ToolDelta) -> ReplyDelta {
    match delta {
        ToolDelta::Content(text) => ReplyDelta::Content(text),
        ToolDelta::Call { index, name } => ReplyDelta::ToolCallStart { index, name },
        ToolDelta::Arguments { index, fragment } => ReplyDelta::ToolCallArguments {
            index,
            arguments: fragment,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Output of Qwen3 with a think block and a call (the shape Qwen3's chat template shows
    /// the model in its own assistant turns).
    const QWEN3_OUTPUT: &str = "<think>\nThe user wants the weather in Paris.\n</think>\n\n\
        Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";

    fn run(pieces: &[&str]) -> (Vec<ReplyDelta>, AssistantReply) {
        let mut reply = TextReply::new(Some(false), Some(ToolFormat::Hermes));
        let mut deltas = Vec::new();
        for piece in pieces {
            deltas.extend(reply.push(piece));
        }
        deltas.extend(reply.finish());
        (deltas, reply.reply().clone())
    }

    #[test]
    fn reasoning_text_and_calls_come_apart_however_the_text_is_cut() {
        let (_, whole) = run(&[QWEN3_OUTPUT]);
        assert_eq!(
            whole.reasoning.trim(),
            "The user wants the weather in Paris."
        );
        assert_eq!(whole.content.trim(), "Let me check.");
        assert_eq!(whole.tool_calls.len(), 1);
        assert_eq!(whole.tool_calls[0].name, "get_weather");
        assert_eq!(whole.tool_calls[0].arguments, r#"{"city": "Paris"}"#);
        let chars: Vec<String> = QWEN3_OUTPUT.chars().map(String::from).collect();
        let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
        let (deltas, streamed) = run(&refs);
        assert_eq!(streamed, whole);
        assert!(deltas
            .iter()
            .all(|d| !matches!(d, ReplyDelta::Content(t) if t.is_empty())));
    }

    #[test]
    fn without_tools_the_answer_is_text() {
        let mut reply = TextReply::new(None, None);
        let mut deltas = reply.push("<tool_call>not parsed");
        deltas.extend(reply.finish());
        assert_eq!(reply.reply().content, "<tool_call>not parsed");
        assert!(reply.reply().tool_calls.is_empty());
    }
}

//! How a model wants a conversation written: its Jinja chat template, or gpt-oss's harmony
//! format. Front ends hold a [`ChatFormat`] and render plain chats through it; richer
//! harmony conversations (tools, reasoning) are built with [`crate::harmony`] directly.

use std::sync::Arc;

use crate::harmony::{
    DeveloperContent, HarmonyRenderer, Message, ReasoningEffort, RenderConfig, Role, SystemContent,
};
use crate::{ChatMessage, ChatTemplate, TextError, Tokenizer};

/// A model's chat format.
#[derive(Clone, Debug)]
pub enum ChatFormat {
    /// A chat template (`tokenizer.chat_template`, `tokenizer_config.json`).
    Template(Arc<ChatTemplate>),
    /// Harmony (gpt-oss), rendered natively with the o200k_harmony tokenizer.
    Harmony,
}

impl ChatFormat {
    pub fn is_harmony(&self) -> bool {
        matches!(self, ChatFormat::Harmony)
    }

    pub fn template(&self) -> Option<&Arc<ChatTemplate>> {
        match self {
            ChatFormat::Template(template) => Some(template),
            ChatFormat::Harmony => None,
        }
    }

    /// The prompt ids of a plain chat, ready for the model to write the assistant's turn.
    /// `effort` is used by harmony only.
    pub fn render_chat(
        &self,
        tokenizer: &Tokenizer,
        messages: &[ChatMessage],
        effort: ReasoningEffort,
    ) -> Result<Vec<u32>, TextError> {
        match self {
            ChatFormat::Template(template) => {
                let text = template.render(messages, true)?;
                tokenize_rendered(tokenizer, &text)
            }
            ChatFormat::Harmony => {
                let conversation = harmony_chat(messages, effort)?;
                HarmonyRenderer::new(tokenizer)?.render_for_completion(
                    &conversation,
                    Role::Assistant,
                    RenderConfig::default(),
                )
            }
        }
    }
}

/// A rendered template's ids. The template writes its own special tokens, so they are parsed;
/// BOS is added only where the model wants one and the template did not write it.
pub fn tokenize_rendered(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>, TextError> {
    let mut ids = tokenizer.encode(text, false, true)?;
    if let (true, Some(bos)) = (tokenizer.adds_bos(), tokenizer.bos_id()) {
        if ids.first() != Some(&bos) {
            ids.insert(0, bos);
        }
    }
    Ok(ids)
}

/// A plain chat as a harmony conversation, the way OpenAI-compatible servers map it: harmony's
/// system message (with `effort`), then `system` and `developer` texts as the developer's
/// instructions (joined by a blank line), user turns, and assistant turns as `final` answers.
pub fn harmony_chat(
    messages: &[ChatMessage],
    effort: ReasoningEffort,
) -> Result<Vec<Message>, TextError> {
    let system = SystemContent {
        reasoning_effort: Some(effort),
        ..SystemContent::default()
    };
    let mut out = vec![Message::system(system)];
    let instructions: Vec<&str> = messages
        .iter()
        .filter(|m| m.role == "system" || m.role == "developer")
        .map(|m| m.content.as_str())
        .collect();
    if !instructions.is_empty() {
        out.push(Message::developer(DeveloperContent {
            instructions: Some(instructions.join("\n\n")),
            tools: None,
        }));
    }
    for m in messages {
        match m.role.as_str() {
            "system" | "developer" => {}
            "user" => out.push(Message::text(Role::User, &m.content)),
            "assistant" => {
                out.push(Message::text(Role::Assistant, &m.content).with_channel("final"))
            }
            other => {
                return Err(TextError::Harmony(format!(
                    "a plain chat message has role {other:?}; expected system, developer, user or assistant"
                )))
            }
        }
    }
    Ok(out)
}

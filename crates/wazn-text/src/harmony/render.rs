//! Conversations → o200k_harmony token ids. Formatting tokens are emitted as ids; all text
//! (including user text that spells a special token) goes through ordinary encoding.

use super::typescript::tools_section;
use super::{Content, DeveloperContent, Message, Role, SystemContent};
use crate::tokenizer::o200k_ids as ids;
use crate::{TextError, Tokenizer};

/// How a conversation is rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenderConfig {
    /// When the last assistant message is on `final`, leave out the `analysis` messages that
    /// come before the first `final` one (the model's earlier reasoning is not shown again).
    pub auto_drop_analysis: bool,
}

impl Default for RenderConfig {
    fn default() -> RenderConfig {
        RenderConfig {
            auto_drop_analysis: true,
        }
    }
}

/// Renders harmony conversations with an o200k_harmony tokenizer.
#[derive(Clone, Copy, Debug)]
pub struct HarmonyRenderer<'t> {
    tokenizer: &'t Tokenizer,
}

impl<'t> HarmonyRenderer<'t> {
    /// Fails unless `tokenizer` has harmony's formatting tokens at their ids.
    pub fn new(tokenizer: &'t Tokenizer) -> Result<HarmonyRenderer<'t>, TextError> {
        let expected = [
            (ids::START, "<|start|>"),
            (ids::MESSAGE, "<|message|>"),
            (ids::END, "<|end|>"),
            (ids::CHANNEL, "<|channel|>"),
            (ids::CONSTRAIN, "<|constrain|>"),
            (ids::CALL, "<|call|>"),
            (ids::RETURN, "<|return|>"),
        ];
        for (id, text) in expected {
            if tokenizer.token_bytes(id).as_deref() != Some(text.as_bytes()) {
                return Err(TextError::Harmony(format!(
                    "the tokenizer has no {text} at id {id}; harmony needs o200k_harmony"
                )));
            }
        }
        Ok(HarmonyRenderer { tokenizer })
    }

    /// Ids that end an assistant action: `<|return|>` (done) and `<|call|>` (tool call).
    /// These are the stop tokens for sampling.
    pub fn stop_tokens_for_assistant_actions() -> [u32; 2] {
        [ids::RETURN, ids::CALL]
    }

    /// Every id that ends a message: `<|return|>`, `<|end|>`, `<|call|>`.
    pub fn stop_tokens() -> [u32; 3] {
        [ids::RETURN, ids::END, ids::CALL]
    }

    fn text(&self, text: &str, out: &mut Vec<u32>) -> Result<(), TextError> {
        out.extend(self.tokenizer.encode(text, false, false)?);
        Ok(())
    }

    /// The messages, one after the other.
    pub fn render_conversation(
        &self,
        messages: &[Message],
        config: RenderConfig,
    ) -> Result<Vec<u32>, TextError> {
        let has_function_tools = messages.iter().any(|m| {
            m.content.iter().any(|c| match c {
                Content::DeveloperContent(dev) => dev.has_function_tools(),
                _ => false,
            })
        });
        let last_assistant_is_final = messages
            .iter()
            .rev()
            .find(|m| m.role == Role::Assistant)
            .is_some_and(|m| m.channel.as_deref() == Some("final"));
        let first_final = messages
            .iter()
            .position(|m| m.channel.as_deref() == Some("final"));
        let drop_before = match first_final {
            Some(first) if config.auto_drop_analysis && last_assistant_is_final => first,
            _ => 0,
        };
        let mut out = Vec::new();
        for (i, message) in messages.iter().enumerate() {
            if i < drop_before && message.channel.as_deref() == Some("analysis") {
                continue;
            }
            self.render_message(message, has_function_tools, &mut out)?;
        }
        Ok(out)
    }

    /// The prompt for the next message: the conversation, then `<|start|>{next_role}`.
    pub fn render_for_completion(
        &self,
        messages: &[Message],
        next_role: Role,
        config: RenderConfig,
    ) -> Result<Vec<u32>, TextError> {
        let mut out = self.render_conversation(messages, config)?;
        out.push(ids::START);
        self.text(next_role.as_str(), &mut out)?;
        Ok(out)
    }

    /// The conversation as a training example: a closing assistant `final` message ends with
    /// `<|return|>` instead of `<|end|>`.
    pub fn render_for_training(
        &self,
        messages: &[Message],
        config: RenderConfig,
    ) -> Result<Vec<u32>, TextError> {
        let mut out = self.render_conversation(messages, config)?;
        let ends_final = messages
            .last()
            .is_some_and(|m| m.role == Role::Assistant && m.channel.as_deref() == Some("final"));
        if ends_final {
            if let Some(last) = out.last_mut() {
                *last = ids::RETURN;
            }
        }
        Ok(out)
    }

    /// One message. `has_function_tools` adds the line that sends function calls to the
    /// commentary channel to the system message.
    pub fn render_message(
        &self,
        message: &Message,
        has_function_tools: bool,
        out: &mut Vec<u32>,
    ) -> Result<(), TextError> {
        out.push(ids::START);
        match (message.role, &message.name) {
            (Role::Tool, Some(name)) => self.text(name, out)?,
            (Role::Tool, None) => {
                return Err(TextError::Harmony(
                    "a tool message needs the tool's name".into(),
                ))
            }
            (role, None) => self.text(role.as_str(), out)?,
            (role, Some(name)) => self.text(&format!("{}:{name}", role.as_str()), out)?,
        }
        if let Some(recipient) = message.recipient.as_deref().filter(|&r| r != "all") {
            self.text(&format!(" to={recipient}"), out)?;
        }
        if let Some(channel) = &message.channel {
            out.push(ids::CHANNEL);
            self.text(channel, out)?;
        }
        if let Some(content_type) = &message.content_type {
            match content_type.strip_prefix("<|constrain|>") {
                Some(rest) => {
                    self.text(" ", out)?;
                    out.push(ids::CONSTRAIN);
                    if !rest.is_empty() {
                        self.text(rest, out)?;
                    }
                }
                None => self.text(&format!(" {content_type}"), out)?,
            }
        }
        out.push(ids::MESSAGE);
        for content in &message.content {
            match content {
                Content::Text { text } => self.text(text, out)?,
                Content::SystemContent(sys) => {
                    require_role(message.role, Role::System, "system content")?;
                    self.text(&system_text(sys, has_function_tools), out)?;
                }
                Content::DeveloperContent(dev) => {
                    require_role(message.role, Role::Developer, "developer content")?;
                    self.text(&developer_text(dev), out)?;
                }
            }
        }
        let calls_tool = message.role == Role::Assistant && message.recipient.is_some();
        out.push(if calls_tool { ids::CALL } else { ids::END });
        Ok(())
    }
}

fn require_role(found: Role, wanted: Role, what: &str) -> Result<(), TextError> {
    if found == wanted {
        Ok(())
    } else {
        Err(TextError::Harmony(format!(
            "{what} may only appear in a {} message, not in a {} message",
            wanted.as_str(),
            found.as_str()
        )))
    }
}

/// The text of a system message: identity and dates, reasoning effort, built-in tools,
/// channels; sections separated by a blank line.
pub(super) fn system_text(sys: &SystemContent, has_function_tools: bool) -> String {
    let mut sections = Vec::new();
    let identity: Vec<String> = [
        sys.model_identity.clone(),
        sys.knowledge_cutoff
            .as_ref()
            .map(|d| format!("Knowledge cutoff: {d}")),
        sys.conversation_start_date
            .as_ref()
            .map(|d| format!("Current date: {d}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !identity.is_empty() {
        sections.push(identity.join("\n"));
    }
    if let Some(effort) = sys.reasoning_effort {
        sections.push(format!("Reasoning: {}", effort.as_str()));
    }
    if let Some(tools) = sys.tools.as_ref().filter(|t| !t.is_empty()) {
        sections.push(tools_section(tools));
    }
    if let Some(channels) = sys
        .channel_config
        .as_ref()
        .filter(|c| !c.valid_channels.is_empty())
    {
        let mut line = format!("# Valid channels: {}.", channels.valid_channels.join(", "));
        if channels.channel_required {
            line.push_str(" Channel must be included for every message.");
        }
        if has_function_tools {
            line.push_str("\nCalls to these tools must go to the commentary channel: 'functions'.");
        }
        sections.push(line);
    }
    sections.join("\n\n")
}

/// The text of a developer message: `# Instructions` and the tools.
pub(super) fn developer_text(dev: &DeveloperContent) -> String {
    let mut sections = Vec::new();
    if let Some(instructions) = &dev.instructions {
        sections.push("# Instructions".to_string());
        sections.push(instructions.clone());
    }
    if let Some(tools) = dev.tools.as_ref().filter(|t| !t.is_empty()) {
        sections.push(tools_section(tools));
    }
    sections.join("\n\n")
}

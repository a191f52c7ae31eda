//! The harmony chat format of OpenAI's gpt-oss models: conversations rendered to o200k_harmony
//! token ids, and generated ids parsed back into messages as they stream.
//!
//! A message is `<|start|>{header}<|message|>{content}<|end|>`; the header holds the role (or a
//! tool's name), an optional ` to={recipient}`, an optional `<|channel|>{channel}` and an
//! optional content type (` json`, ` <|constrain|>json`). Assistant turns use the channels
//! `analysis` (reasoning, not for users), `commentary` (tool calls, preambles) and `final`.
//! The types read and write the JSON form of OpenAI's `openai-harmony` library
//! (`Conversation.to_json()`), so its conversations can be used as they are.

pub mod grammar;
mod json;
mod parser;
mod render;
mod reply;
mod typescript;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use json::OrderedJson;
pub use parser::{ParserState, StreamParser};
pub use render::{HarmonyRenderer, RenderConfig};
pub use reply::{AssistantReply, ReplyAssembler, ReplyDelta, ReplyToolCall};

/// Who wrote a message, in harmony's order of authority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }

    pub fn from_name(name: &str) -> Option<Role> {
        Some(match name {
            "system" => Role::System,
            "developer" => Role::Developer,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            _ => return None,
        })
    }
}

/// How long the model reasons before answering (`Reasoning: low|medium|high`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReasoningEffort {
    #[serde(alias = "low")]
    Low,
    #[default]
    #[serde(alias = "medium")]
    Medium,
    #[serde(alias = "high")]
    High,
}

impl ReasoningEffort {
    pub fn as_str(self) -> &'static str {
        match self {
            ReasoningEffort::Low => "low",
            ReasoningEffort::Medium => "medium",
            ReasoningEffort::High => "high",
        }
    }
}

/// One tool: its name, description and JSON-schema parameters (`None`: takes no arguments).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolDescription {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<OrderedJson>,
}

/// A namespace of tools (`functions`, `browser`, ...), rendered as a TypeScript namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolNamespace {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub tools: Vec<ToolDescription>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelConfig {
    pub valid_channels: Vec<String>,
    pub channel_required: bool,
}

/// The system message: identity, dates, reasoning effort, built-in tools, channels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SystemContent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<ReasoningEffort>,
    /// `YYYY-MM-DD`, rendered as `Current date: ...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_start_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knowledge_cutoff: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_config: Option<ChannelConfig>,
    /// Built-in tools (browser, python), by namespace name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<BTreeMap<String, ToolNamespace>>,
}

impl Default for SystemContent {
    /// gpt-oss's usual system message: ChatGPT identity, knowledge cutoff 2024-06, medium
    /// reasoning, the three channels required.
    fn default() -> SystemContent {
        SystemContent {
            model_identity: Some(
                "You are ChatGPT, a large language model trained by OpenAI.".to_string(),
            ),
            reasoning_effort: Some(ReasoningEffort::Medium),
            conversation_start_date: None,
            knowledge_cutoff: Some("2024-06".to_string()),
            channel_config: Some(ChannelConfig {
                valid_channels: ["analysis", "commentary", "final"]
                    .map(String::from)
                    .to_vec(),
                channel_required: true,
            }),
            tools: None,
        }
    }
}

/// The developer message: instructions and function tools.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeveloperContent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Tool namespaces by name; function tools live in `functions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<BTreeMap<String, ToolNamespace>>,
}

impl DeveloperContent {
    /// Puts `tools` in the `functions` namespace.
    pub fn with_function_tools(mut self, tools: Vec<ToolDescription>) -> DeveloperContent {
        let namespace = ToolNamespace {
            name: "functions".to_string(),
            description: None,
            tools,
        };
        self.tools
            .get_or_insert_with(BTreeMap::new)
            .insert(namespace.name.clone(), namespace);
        self
    }

    fn has_function_tools(&self) -> bool {
        self.tools
            .as_ref()
            .and_then(|t| t.get("functions"))
            .is_some_and(|ns| !ns.tools.is_empty())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Content {
    Text { text: String },
    SystemContent(SystemContent),
    DeveloperContent(DeveloperContent),
}

/// One message. `name` is a tool's name (`functions.get_weather`) for tool messages, or an
/// optional author name for the others (rendered `user:alice`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    #[serde(default)]
    pub name: Option<String>,
    pub content: Vec<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

impl Message {
    /// A text message from `role`.
    pub fn text(role: Role, text: impl Into<String>) -> Message {
        Message {
            role,
            name: None,
            content: vec![Content::Text { text: text.into() }],
            channel: None,
            recipient: None,
            content_type: None,
        }
    }

    pub fn system(content: SystemContent) -> Message {
        Message {
            content: vec![Content::SystemContent(content)],
            ..Message::text(Role::System, "")
        }
    }

    pub fn developer(content: DeveloperContent) -> Message {
        Message {
            content: vec![Content::DeveloperContent(content)],
            ..Message::text(Role::Developer, "")
        }
    }

    /// The result of tool `name` (`functions.get_weather`), addressed to the assistant on the
    /// commentary channel.
    pub fn tool_result(name: impl Into<String>, output: impl Into<String>) -> Message {
        Message {
            name: Some(name.into()),
            recipient: Some("assistant".to_string()),
            channel: Some("commentary".to_string()),
            ..Message::text(Role::Tool, output)
        }
    }

    pub fn with_channel(mut self, channel: impl Into<String>) -> Message {
        self.channel = Some(channel.into());
        self
    }

    pub fn with_recipient(mut self, recipient: impl Into<String>) -> Message {
        self.recipient = Some(recipient.into());
        self
    }

    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Message {
        self.content_type = Some(content_type.into());
        self
    }

    /// The concatenated text parts.
    pub fn text_content(&self) -> String {
        self.content
            .iter()
            .filter_map(|c| match c {
                Content::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// A conversation in harmony's JSON form: `{"messages": [...]}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub messages: Vec<Message>,
}

//! Chat templates: the Jinja program in `tokenizer.chat_template` that turns a conversation into
//! the model's prompt, rendered with minijinja configured as transformers configures Jinja2
//! (`apply_chat_template`): trim_blocks and lstrip_blocks on, a trailing newline of the template
//! dropped, lenient undefined values, Python's string and dict methods, and the helpers
//! `raise_exception`, `strftime_now` and a `tojson` that writes what Python's `json.dumps` does.
//! A template is code from a model file, so a render runs on a budget: fuel for the
//! instructions it runs and the strings it makes, in proportion to the conversation (see
//! [`budget`]), and [`MAX_RENDERED_BYTES`] of output, past which it ends in an error.

pub mod budget;
mod pyjson;
mod strftime;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{context, Environment, Error, ErrorKind, Value};
use serde::{Deserialize, Serialize};
use wazn_formats::Metadata;

use crate::{TextError, Tokenizer};

const TEMPLATE_NAME: &str = "chat_template";

/// The most bytes a rendered prompt may have: about four times the text of a million-token
/// context. A template that writes more is hostile or broken.
pub const MAX_RENDERED_BYTES: usize = 16 << 20;

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// "system", "user", "assistant", "tool"...
    pub role: String,
    pub content: String,
    /// An assistant turn's reasoning, which templates such as Qwen3's write back into the
    /// turns after the last user message (a tool-calling loop). Left out when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// An assistant turn's function calls, as templates read them:
    /// `{"type": "function", "function": {"name", "arguments"}}` (arguments as an object
    /// where they are valid JSON), with the call's `id` when known. Left out when absent, so
    /// that `message.tool_calls is defined` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<serde_json::Value>>,
    /// A tool result: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// A tool result: the function that gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
            reasoning_content: None,
            tool_calls: None,
            tool_call_id: None,
            name: None,
        }
    }
}

/// A compiled chat template with the BOS/EOS strings it may write.
pub struct ChatTemplate {
    /// The Jinja source, to tell which features the template has.
    source: String,
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// The template in `tokenizer.chat_template`, if the file has one, with the tokenizer's BOS
    /// and EOS texts (empty when it has none).
    pub fn from_metadata(
        md: &Metadata,
        tokenizer: &Tokenizer,
    ) -> Result<Option<ChatTemplate>, TextError> {
        let Some(source) = md.get_str("tokenizer.chat_template")? else {
            return Ok(None);
        };
        let text_of = |id: Option<u32>| {
            id.and_then(|id| tokenizer.token_text(id))
                .unwrap_or_default()
                .to_string()
        };
        let bos = text_of(tokenizer.bos_id());
        let eos = text_of(tokenizer.eos_id());
        ChatTemplate::new(source, &bos, &eos).map(Some)
    }

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template reads the `tools` variable (it can show the model its tools).
    pub fn reads_tools(&self) -> bool {
        self.source.contains("tools")
    }

    /// Compiles `source`; a syntax error is reported here, not at render time.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate, TextError> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(false)
            .build()
            .map_err(|e| TextError::TemplateSyntax(e.to_string()))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(python_method);
        env.set_formatter(python_formatter);
        env.add_filter("tojson", pyjson::tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime::strftime_now);
        env.add_template_owned(TEMPLATE_NAME, source.to_string())
            .map_err(|e| TextError::TemplateSyntax(e.to_string()))?;
        Ok(ChatTemplate {
            source: source.to_string(),
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// The prompt for `messages`; `add_generation_prompt` appends the opening of the assistant's
    /// turn.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TextError> {
        self.render_with_tools(messages, None, add_generation_prompt)
    }

    /// As [`ChatTemplate::render`], with the function tools the model may call (OpenAI's
    /// `tools` list, `{"type": "function", "function": {...}}` each) in the template's
    /// `tools` variable.
    pub fn render_with_tools(
        &self,
        messages: &[ChatMessage],
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
    ) -> Result<String, TextError> {
        // Each render gets the fuel its conversation warrants; the environment is cloned for
        // it (its templates, filters and functions are shared, not copied).
        let fuel = budget::render_fuel(messages, tools);
        let mut env = self.env.clone();
        env.set_fuel(Some(fuel));
        let template = env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| TextError::TemplateRender(e.to_string()))?;
        let ctx = context! {
            messages => Value::from(Serde(messages)),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.as_str(),
            eos_token => self.eos_token.as_str(),
            tools => tools.map_or(Value::from(()), |t| Value::from(Serde(t))),
            documents => Value::from(()),
        };
        let mut out = CappedOutput::default();
        let rendered = template.render_captured_to(ctx, &mut out);
        if out.exceeded {
            return Err(TextError::TemplateRender(format!(
                "the rendered prompt exceeds {MAX_RENDERED_BYTES} bytes"
            )));
        }
        rendered.map_err(|e| render_error(e, fuel))?;
        String::from_utf8(out.bytes).map_err(|e| TextError::TemplateRender(e.to_string()))
    }
}

/// Where a render writes: its bytes, up to [`MAX_RENDERED_BYTES`]; a write past them fails
/// (which stops the render) and is remembered.
#[derive(Default)]
struct CappedOutput {
    bytes: Vec<u8>,
    exceeded: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_RENDERED_BYTES {
            self.exceeded = true;
            return Err(std::io::Error::other("the rendered prompt is too long"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Prints values as Python's `str()` does where minijinja's own text differs: floats use
/// Python's shortest repr (`1e+17`, not `100000000000000000.0`).
fn python_formatter(
    out: &mut minijinja::Output,
    state: &mut minijinja::State,
    value: &Value,
) -> Result<(), Error> {
    if value.is_number() && !value.is_integer() {
        let x = f64::try_from(value.clone())?;
        return out
            .write_str(&pyjson::python_float_repr(x))
            .map_err(|e| Error::new(ErrorKind::WriteFailure, e.to_string()));
    }
    minijinja::escape_formatter(out, state, value)
}

/// Python's methods on strings, lists and dicts (`.strip()`, `.items()`...), from
/// minijinja-contrib, with `str.title` written out where it differs from Python's.
fn python_method(
    state: &mut minijinja::State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    match (value.as_str(), method, args) {
        (Some(s), "title", []) => Ok(Value::from(python_title(s))),
        _ => minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args),
    }
}

/// `str.title()`: a letter after a non-letter (space, digit, quote, apostrophe) is upper-cased,
/// every other letter lower-cased.
fn python_title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut previous_is_cased = false;
    for c in s.chars() {
        let cased = c.is_uppercase() || c.is_lowercase();
        if cased && previous_is_cased {
            out.extend(c.to_lowercase());
        } else if cased {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        previous_is_cased = cased;
    }
    out
}

/// The message a template passed to `raise_exception`, carried as the error's source so it can
/// be told apart from the engine's own errors.
#[derive(Debug)]
struct RaisedByTemplate(String);

impl std::fmt::Display for RaisedByTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedByTemplate {}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message.clone())
        .with_source(RaisedByTemplate(message)))
}

fn render_error(err: Error, fuel: u64) -> TextError {
    if err.kind() == ErrorKind::OutOfFuel {
        return TextError::TemplateRender(format!(
            "the chat template went past its budget for this conversation: {fuel} instructions, \
             or {} MiB of strings made",
            fuel.saturating_mul(budget::BYTES_PER_FUEL) >> 20
        ));
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&err);
    while let Some(s) = source {
        if let Some(raised) = s.downcast_ref::<RaisedByTemplate>() {
            return TextError::TemplateRaised(raised.0.clone());
        }
        source = s.source();
    }
    TextError::TemplateRender(err.to_string())
}

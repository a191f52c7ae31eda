//! Generated ids → harmony messages, one token at a time.
//!
//! The parser follows the message grammar: `<|start|>`, header tokens up to `<|message|>`,
//! content tokens up to a stop token (`<|end|>`, `<|return|>`, `<|call|>`). While content
//! streams it reports what each token added (a whole number of characters; a character split
//! over tokens is held back until complete), together with the current channel and recipient,
//! so a caller can route text to reasoning, answer or tool-call arguments as it arrives.

use super::{Content, Message, Role};
use crate::tokenizer::o200k_ids as ids;
use crate::{Detokenizer, TextError, Tokenizer};

/// Where the parser is in the message grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParserState {
    /// Between messages: the next token must be `<|start|>`.
    ExpectStart,
    /// Reading a message header (role, recipient, channel, content type).
    Header,
    /// Reading a message's content.
    Content,
}

/// A parsed message header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Header {
    role: Option<Role>,
    name: Option<String>,
    recipient: Option<String>,
    channel: Option<String>,
    content_type: Option<String>,
}

#[derive(Clone, Debug)]
enum State {
    ExpectStart,
    Header(Vec<u32>),
    Content {
        header: Header,
        text: String,
        detok: Detokenizer,
    },
}

/// Incremental harmony parser. It holds no tokenizer, so a sequence can own one next to a
/// shared tokenizer; pass the same o200k_harmony tokenizer to every call.
#[derive(Clone, Debug)]
pub struct StreamParser {
    /// The role of the first message when the prompt already opened it (`<|start|>assistant`).
    next_role: Option<Role>,
    state: State,
    messages: Vec<Message>,
    last_delta: Option<String>,
}

fn is_stop(id: u32) -> bool {
    matches!(id, ids::END | ids::RETURN | ids::CALL)
}

impl StreamParser {
    /// A parser for ids generated after a prompt that ends with `<|start|>{role}` (pass
    /// `Some(Role::Assistant)` after a completion prompt), or at a message boundary (`None`).
    pub fn new(role: Option<Role>) -> StreamParser {
        StreamParser {
            next_role: role,
            state: match role {
                Some(_) => State::Header(Vec::new()),
                None => State::ExpectStart,
            },
            messages: Vec::new(),
            last_delta: None,
        }
    }

    /// Consumes one generated id. A token that breaks the grammar is an error.
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<(), TextError> {
        match &mut self.state {
            State::ExpectStart => {
                if id != ids::START {
                    return Err(TextError::Harmony(format!(
                        "token {id} where a message must begin with <|start|>"
                    )));
                }
                self.state = State::Header(Vec::new());
            }
            State::Header(tokens) => {
                if id == ids::MESSAGE {
                    let header_text = tokenizer.decode(tokens, false)?;
                    let header = parse_header(&header_text, self.next_role.take())?;
                    self.state = State::Content {
                        header,
                        text: String::new(),
                        detok: Detokenizer::new(false),
                    };
                } else if is_stop(id) {
                    return Err(TextError::Harmony(format!(
                        "stop token {id} inside a message header"
                    )));
                } else {
                    tokens.push(id);
                }
            }
            State::Content { text, detok, .. } => {
                if is_stop(id) {
                    self.end_message();
                } else {
                    let delta = detok.push(tokenizer, id);
                    text.push_str(&delta);
                    self.last_delta = (!delta.is_empty()).then_some(delta);
                }
            }
        }
        Ok(())
    }

    /// Ends the stream: a message still open is closed as if a stop token came; a header
    /// still open is an error.
    pub fn finish(&mut self) -> Result<(), TextError> {
        match self.state {
            State::ExpectStart => Ok(()),
            State::Header(_) => Err(TextError::Harmony(
                "the stream ended inside a message header".into(),
            )),
            State::Content { .. } => {
                self.end_message();
                Ok(())
            }
        }
    }

    fn end_message(&mut self) {
        let state = std::mem::replace(&mut self.state, State::ExpectStart);
        if let State::Content {
            header,
            mut text,
            detok,
        } = state
        {
            text.push_str(&detok.finish());
            self.messages.push(Message {
                role: header.role.unwrap_or(Role::Assistant),
                name: header.name,
                content: vec![Content::Text { text }],
                channel: header.channel,
                recipient: header.recipient,
                content_type: header.content_type,
            });
        }
        self.last_delta = None;
    }

    /// The messages completed so far.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    pub fn into_messages(self) -> Vec<Message> {
        self.messages
    }

    pub fn state(&self) -> ParserState {
        match self.state {
            State::ExpectStart => ParserState::ExpectStart,
            State::Header(_) => ParserState::Header,
            State::Content { .. } => ParserState::Content,
        }
    }

    /// The text the last token added to the current message; `None` when it added none
    /// (header tokens, a held-back partial character, a stop token).
    pub fn last_delta(&self) -> Option<&str> {
        self.last_delta.as_deref()
    }

    fn header(&self) -> Option<&Header> {
        match &self.state {
            State::Content { header, .. } => Some(header),
            _ => None,
        }
    }

    /// The content of the message being read, so far.
    pub fn current_content(&self) -> &str {
        match &self.state {
            State::Content { text, .. } => text,
            _ => "",
        }
    }

    pub fn current_role(&self) -> Option<Role> {
        match &self.state {
            State::Content { header, .. } => header.role,
            State::Header(_) => self.next_role,
            State::ExpectStart => None,
        }
    }

    pub fn current_channel(&self) -> Option<&str> {
        self.header()?.channel.as_deref()
    }

    pub fn current_recipient(&self) -> Option<&str> {
        self.header()?.recipient.as_deref()
    }

    pub fn current_content_type(&self) -> Option<&str> {
        self.header()?.content_type.as_deref()
    }
}

/// Reads a header such as `assistant to=functions.f<|channel|>commentary <|constrain|>json`.
/// The channel follows `<|channel|>` up to whitespace or `<`; of the remaining words the first
/// is the role (unless `role` is already known; an unknown word followed by more words is a
/// tool's name), a last word `to=X` is the recipient, and otherwise the last word is the
/// content type and the word before it the recipient.
fn parse_header(text: &str, role: Option<Role>) -> Result<Header, TextError> {
    const CHANNEL: &str = "<|channel|>";
    const CONSTRAIN: &str = "<|constrain|>";
    let mut rest = text.to_string();
    let mut header = Header::default();
    if let Some(at) = rest.find(CHANNEL) {
        let after = &rest[at + CHANNEL.len()..];
        let len = after
            .find(|c: char| c.is_whitespace() || c == '<')
            .unwrap_or(after.len());
        if len == 0 {
            return Err(TextError::Harmony(format!(
                "header {text:?} has <|channel|> but no channel name"
            )));
        }
        header.channel = Some(after[..len].to_string());
        rest = format!("{}{}", &rest[..at], &after[len..]);
    }
    // `to=x<|constrain|>json` carries the content type without a space in front.
    let rest = rest.trim().replace(CONSTRAIN, &format!(" {CONSTRAIN}"));
    let mut words: Vec<&str> = rest.split_ascii_whitespace().collect();

    let role = match role {
        Some(role) => role,
        None => {
            let first = *words
                .first()
                .ok_or_else(|| TextError::Harmony("a message header has no role".into()))?;
            match Role::from_name(first) {
                Some(role) => role,
                None if words.len() > 1 || first.starts_with("to=") => {
                    words.remove(0);
                    header.name = Some(first.to_string());
                    Role::Tool
                }
                None => {
                    return Err(TextError::Harmony(format!(
                        "unknown role {first:?} in a message header"
                    )))
                }
            }
        }
    };
    header.role = Some(role);
    if words.first() == Some(&role.as_str()) {
        words.remove(0);
    }
    let n_words = words.len();
    if let Some(last) = words.pop() {
        if let Some(recipient) = last.strip_prefix("to=") {
            header.recipient = Some(recipient.to_string());
        } else if n_words == 1 {
            header.recipient = Some(last.to_string());
        } else {
            header.content_type = Some(last.to_string());
            if let Some(recipient) = words.pop() {
                let recipient = recipient.strip_prefix("to=").unwrap_or(recipient);
                header.recipient = Some(recipient.to_string());
            }
        }
    }
    if !words.is_empty() {
        return Err(TextError::Harmony(format!(
            "unexpected words {words:?} in the message header {text:?}"
        )));
    }
    Ok(header)
}

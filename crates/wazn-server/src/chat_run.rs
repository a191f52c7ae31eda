//! One answer (of a chat, or of a raw prompt) read piece by piece, for the APIs that speak of
//! a reply's parts rather than of choices (Responses, Anthropic Messages, Ollama): reasoning,
//! text and function calls as [`ReplyDelta`]s, then why it ended and what it cost. The engine,
//! the batching and the readers of reasoning and calls are those of chat completions.

use std::sync::Arc;
use std::time::Instant;

use wazn_engine::{FinishReason, ServiceEvent};
use wazn_text::harmony::{AssistantReply, ReplyDelta};

use crate::error::ApiError;
use crate::generate::{self, Events, Job, Reply};
use crate::text_reply::TextReply;
use crate::AppState;

/// Why an answer ended, in the terms every API maps from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The model ended its turn (an end-of-generation token or the grammar's end).
    EndOfTurn,
    /// One of the request's stop strings was written (it is not in the text).
    StopString(String),
    /// `max_tokens` generated.
    MaxTokens,
    /// The context is full.
    ContextFull,
    Cancelled,
}

impl Ending {
    fn of(reason: FinishReason, stop_string: Option<String>) -> Ending {
        match (reason, stop_string) {
            (FinishReason::Stop, Some(s)) => Ending::StopString(s),
            (FinishReason::Stop, None) => Ending::EndOfTurn,
            (FinishReason::Length, _) => Ending::MaxTokens,
            (FinishReason::ContextFull, _) => Ending::ContextFull,
            (FinishReason::Cancelled, _) => Ending::Cancelled,
        }
    }

    /// Whether the answer was cut short (a token limit or a full context).
    pub fn is_truncated(&self) -> bool {
        matches!(self, Ending::MaxTokens | Ending::ContextFull)
    }
}

/// A chat job's single answer, in flight.
pub struct ChatRun {
    state: Arc<AppState>,
    events: Events,
    /// An event read by [`ChatRun::start`] while it waited to tell a refused request from a
    /// running one, not yet handed on.
    first: Option<ServiceEvent>,
    reply: Reply,
    started: Instant,
    last_token_at: Option<Instant>,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    ending: Option<Ending>,
}

impl ChatRun {
    /// Submits `job` (its first prompt, one choice) and waits for the engine to admit it (not
    /// for its first token), so that a request it refuses is a plain error rather than a
    /// broken stream, and a stream begins before a long prompt has been read.
    pub async fn start(state: Arc<AppState>, mut job: Job) -> Result<ChatRun, ApiError> {
        job.generation.n = 1;
        job.prompts.truncate(1);
        job.echo = false;
        let prompt_tokens = job.prompts.first().map_or(0, |p| p.ids.len());
        let reply = Reply::of(&job).unwrap_or_else(|| Reply::Text(TextReply::new(None, None)));
        let started = Instant::now();
        let mut events = generate::submit(&state, &job)?;
        let first = match events.recv().await {
            Some((_, ServiceEvent::Rejected(err))) => return Err(generate::rejected(err)),
            Some((_, ServiceEvent::Started)) => None,
            Some((_, event)) => Some(event),
            None => return Err(ApiError::unavailable("the engine stopped")),
        };
        Ok(ChatRun {
            state,
            events,
            first,
            reply,
            started,
            last_token_at: None,
            prompt_tokens,
            completion_tokens: 0,
            ending: None,
        })
    }

    /// The pieces of the reply the next step of generation completed, or `None` once the
    /// answer has ended (then [`ChatRun::ending`] says why).
    pub async fn next(&mut self) -> Result<Option<Vec<ReplyDelta>>, ApiError> {
        if self.ending.is_some() {
            return Ok(None);
        }
        let event = loop {
            let event = match self.first.take() {
                Some(first) => first,
                None => match self.events.recv().await {
                    Some((_, event)) => event,
                    None => return Err(ApiError::unavailable("the engine stopped")),
                },
            };
            match event {
                ServiceEvent::Event(event) => break event,
                ServiceEvent::Started => continue,
                ServiceEvent::Rejected(err) => return Err(generate::rejected(err)),
            }
        };
        if event.token.is_some() {
            let now = Instant::now();
            match self.last_token_at {
                None => self.state.metrics.observe_ttft(now - self.started),
                Some(t) => self.state.metrics.observe_inter_token(now - t),
            }
            self.last_token_at = Some(now);
            self.completion_tokens += 1;
        }
        let mut deltas = self.reply.push(&self.state, event.token, &event.text);
        if let Some(reason) = event.finished {
            deltas.extend(self.reply.finish());
            self.ending = Some(Ending::of(reason, event.stop_string));
        }
        Ok(Some(deltas))
    }

    /// The reply so far (whole once [`ChatRun::next`] has said `None`).
    pub fn reply(&self) -> &AssistantReply {
        self.reply.reply()
    }

    /// Why the answer ended; `None` while it runs.
    pub fn ending(&self) -> Option<&Ending> {
        self.ending.as_ref()
    }
}

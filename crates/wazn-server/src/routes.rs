//! The handlers: parse and check a request, then hand it to [`generate`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use wazn_text::think;
use wazn_text::{tool_calls, ChatFormat};

use crate::completion_prompt::{self, Prompt};
use crate::error::ApiError;
use crate::generate::{self, Job, Kind};
use crate::harmony_request;
use crate::structured::{self, RequestedGrammar};
use crate::tool_request::{self, ToolPlan};
use crate::wire::{self, ChatRequest, CommonParams, CompletionRequest};
use crate::AppState;
use wazn_engine::{Constraint, GrammarSpec};
use wazn_text::harmony::grammar as harmony_grammar;

pub(crate) fn body_bytes(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        if status.as_u16() == 413 {
            ApiError::with_status(
                status,
                format!("the request body is larger than the limit of {limit} bytes"),
            )
        } else {
            ApiError::with_status(status, format!("cannot read the request body: {rejection}"))
        }
    })?;
    // What a client sent, for whoever runs the server with RUST_LOG=wazn_server=debug.
    tracing::debug!(body = %String::from_utf8_lossy(&body), "request body");
    Ok(body)
}

/// Checks the requested model name against the one served.
fn check_model(state: &AppState, common: &CommonParams) -> Result<(), ApiError> {
    check_model_name(state, common.model.as_deref())
}

/// Checks a model name, when given, against the one served.
pub(crate) fn check_model_name(state: &AppState, model: Option<&str>) -> Result<(), ApiError> {
    match model {
        Some(model) if model != state.model_id => {
            Err(ApiError::model_not_found(model, &state.model_id))
        }
        _ => Ok(()),
    }
}

pub(crate) fn default_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ 0x9e37_79b9_7f4a_7c15
}

pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body, state.body_limit_bytes)?;
    let request: ChatRequest = wire::parse_body(&body)?;
    let job = chat_job(&state, &body, &request).await?;
    generate::run(state, job).await
}

/// The job of a conversation another API gave, written as a chat completions body.
pub(crate) async fn chat_job_from_value(
    state: &Arc<AppState>,
    chat_body: &Value,
) -> Result<Job, ApiError> {
    let body = serde_json::to_vec(chat_body)
        .map_err(|e| ApiError::internal(format!("cannot write the chat request: {e}")))?;
    let request: ChatRequest = wire::parse_body(&body)?;
    chat_job(state, &body, &request).await
}

/// A checked chat request (whose body is `body`) as a job for the engine: the prompt rendered
/// by the model's template or harmony, the reply's parsers and the output's constraint. Every
/// API that holds a conversation (chat completions, Responses, Messages, Ollama's chat)
/// arrives here in chat completions' shape.
pub(crate) async fn chat_job(
    state: &Arc<AppState>,
    body: &[u8],
    request: &ChatRequest,
) -> Result<Job, ApiError> {
    check_model(state, &request.common)?;
    if request.messages.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "messages is empty; give at least one message",
        ));
    }
    let logprobs = if request.logprobs {
        Some(wire::check_top_logprobs(
            "top_logprobs",
            request.top_logprobs.unwrap_or(0),
        )?)
    } else if request.top_logprobs.is_some_and(|k| k > 0) {
        return Err(ApiError::invalid_param(
            "top_logprobs",
            "top_logprobs needs logprobs set to true",
        ));
    } else {
        None
    };
    let generation = request.common.check(state.n_ctx, default_seed())?;
    let grammar = structured::requested_grammar(&request.common)?;
    let template = match &state.chat_format {
        Some(ChatFormat::Template(template)) => template,
        Some(ChatFormat::Harmony) => {
            let (tokenizer, effort, body) = (
                Arc::clone(&state.tokenizer),
                state.reasoning_effort,
                body.to_vec(),
            );
            let prompt_ids = state
                .preparing
                .run(move || {
                    let request: ChatRequest = wire::parse_body(&body)?;
                    harmony_request::prompt_ids(&tokenizer, &body, &request, effort)
                })
                .await?;
            let constraint = harmony_constraint(state, request, grammar).await?;
            let job = Job {
                kind: Kind::Chat,
                prompts: vec![Prompt::ids(prompt_ids)],
                echo: false,
                generation,
                logprobs,
                harmony: true,
                think: None,
                constraint,
                tool_format: None,
            };
            return Ok(job);
        }
        None => {
            return Err(ApiError::bad_request(
                "this model has no chat template; use /v1/completions",
            ))
        }
    };
    let messages = request
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| tool_request::chat_message(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    let tools = ToolPlan::of(request, state.tool_format)?;
    let (template, tokenizer, thinks) = (
        Arc::clone(template),
        Arc::clone(&state.tokenizer),
        state.thinks,
    );
    let tools_render = tools
        .as_ref()
        .map(|plan| (plan.tools_json.clone(), plan.format));
    let (prompt_ids, think) = state
        .preparing
        .run(move || {
            let text = match &tools_render {
                Some((tools_json, format)) => {
                    tool_calls::render_with_tools(&template, &messages, tools_json, *format)
                }
                None => template.render(&messages, true),
            }
            .map_err(|e| ApiError::bad_request(format!("cannot render the chat template: {e}")))?;
            // The template writes its own special tokens, so they are parsed; BOS is added only
            // where the model wants one and the template did not write it.
            let mut prompt_ids = tokenizer
                .encode(&text, false, true)
                .map_err(|e| ApiError::bad_request(format!("cannot tokenize the prompt: {e}")))?;
            if let (true, Some(bos)) = (tokenizer.adds_bos(), tokenizer.bos_id()) {
                if prompt_ids.first() != Some(&bos) {
                    prompt_ids.insert(0, bos);
                }
            }
            let think = thinks.then(|| think::prompt_opens_thinking(&text));
            Ok((prompt_ids, think))
        })
        .await?;
    // A thinking model reasons freely; the grammar applies to the answer after `</think>`.
    let answer_starts_after = match think {
        Some(true) => state.tokenizer.single_token(think::THINK_CLOSE),
        _ => None,
    };
    let constraint =
        match (grammar, &tools) {
            (Some(_), Some(_)) => return Err(ApiError::bad_request(
                "an output constraint (response_format, structured_outputs) cannot be combined \
                 with tools; set tool_choice to none or leave one out",
            )),
            (Some(g), None) => {
                Some(structured::compile(state, g.param, g.spec, answer_starts_after).await?)
            }
            (None, Some(plan)) => match plan.grammar(&state.tokenizer, answer_starts_after)? {
                Some(g) => Some(structured::compile(state, "tools", g.spec, g.after_token).await?),
                None => None,
            },
            (None, None) => None,
        };
    let job = Job {
        kind: Kind::Chat,
        prompts: vec![Prompt::ids(prompt_ids)],
        echo: false,
        generation,
        logprobs,
        harmony: false,
        think,
        constraint,
        tool_format: tools.map(|plan| plan.format),
    };
    Ok(job)
}

pub async fn completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body, state.body_limit_bytes)?;
    let request: CompletionRequest = wire::parse_body(&body)?;
    check_model(&state, &request.common)?;
    let suffix = request.suffix.as_deref().filter(|s| !s.is_empty());
    if request.echo && suffix.is_some() {
        return Err(ApiError::invalid_param(
            "suffix",
            "suffix cannot be combined with echo",
        ));
    }
    let logprobs = request
        .logprobs
        .map(|k| wire::check_top_logprobs("logprobs", k))
        .transpose()?;
    // With echo, max_tokens 0 asks for the prompt alone (and its log-probabilities).
    let least_tokens = if request.echo { 0 } else { 1 };
    let generation = request
        .common
        .check_with(state.n_ctx, default_seed(), least_tokens)?;
    let (prepared, prompt, suffix) = (
        Arc::clone(&state),
        request.prompt.clone(),
        suffix.map(str::to_string),
    );
    let prompts = state
        .preparing
        .run(move || completion_prompt::completion_prompts(&prepared, &prompt, suffix.as_deref()))
        .await?;
    let constraint = match structured::requested_grammar(&request.common)? {
        Some(g) => Some(structured::compile(&state, g.param, g.spec, None).await?),
        None => None,
    };
    let job = Job {
        kind: Kind::Completion,
        prompts,
        echo: request.echo,
        generation,
        logprobs,
        harmony: false,
        think: None,
        constraint,
        tool_format: None,
    };
    generate::run(state, job).await
}

/// The grammar of a harmony model's reply: reasoning stays free, then the `final` answer is
/// JSON of the requested schema, or the reply is a call to one of the tools (required, named).
async fn harmony_constraint(
    state: &Arc<AppState>,
    request: &ChatRequest,
    grammar: Option<RequestedGrammar>,
) -> Result<Option<Constraint>, ApiError> {
    let plan = ToolPlan::of(request, state.tool_format)?;
    let forced = plan
        .as_ref()
        .and_then(|p| p.forced.as_ref().map(|f| (p, f)));
    let (param, lark) =
        match (grammar, forced) {
            (Some(_), Some(_)) => return Err(ApiError::bad_request(
                "an output constraint (response_format, structured_outputs) cannot be combined \
                 with a required tool call",
            )),
            (Some(g), None) => {
                let schema =
                    match g.spec {
                        GrammarSpec::JsonSchema(schema) => schema,
                        GrammarSpec::JsonObject => json!({"type": "object"}),
                        _ => return Err(ApiError::invalid_param(
                            g.param,
                            "harmony models (gpt-oss) take JSON constraints only (json_schema, \
                         json_object, structured_outputs.json)",
                        )),
                    };
                (g.param, harmony_grammar::final_json_grammar(&schema))
            }
            (None, Some((plan, choice))) => (
                "tools",
                harmony_grammar::forced_call_grammar(&plan.tools, choice),
            ),
            (None, None) => return Ok(None),
        };
    let lark = lark.map_err(|e| ApiError::invalid_param(param, e.to_string()))?;
    let constraint = structured::compile(state, param, GrammarSpec::Lark(lark), None);
    Ok(Some(constraint.await?))
}

pub async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{
            "id": state.model_id,
            "object": "model",
            "created": state.created,
            "owned_by": "wazn",
        }],
    }))
}

pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(state.engine.counters()),
    )
        .into_response()
}

/// A path no route serves (404), in the shape of the API the path belongs to.
pub async fn fallback(uri: Uri) -> Response {
    crate::error_in_route_shape(uri.path(), ApiError::not_found(uri.path()))
}

/// A route asked with a method it does not take (405), in its API's shape, so that a client
/// reads the error as it reads the route's others.
pub async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let message = format!("{} does not take {method}", uri.path());
    let err = ApiError::with_status(StatusCode::METHOD_NOT_ALLOWED, message);
    crate::error_in_route_shape(uri.path(), err)
}

//! Multiple-choice scoring by log-likelihood, as lm-evaluation-harness does it: every
//! choice's continuation is scored after the item's context, the prediction is the
//! choice of highest summed log-probability (`acc`), or of highest log-probability per
//! character of the choice (`acc_norm`, completion-style tasks).
//!
//! Contexts and continuations are split as lm-eval's `_encode_pair` splits them: spaces
//! that end the context move to the start of the continuation, the whole text is
//! tokenized once, and the continuation is what follows the context's own tokens. Every
//! (item, choice) pair is a prompt of its own that asks the engine for the scores of its
//! continuation, all batched together.

use std::collections::{BTreeMap, VecDeque};

use wazn_engine::{Engine, PromptScoring, Request, SamplerParams};
use wazn_text::Tokenizer;

use crate::task::{context_with_shots, Item, ItemStyle};
use crate::EvalError;

/// A context and continuation, tokenized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedPair {
    pub context: Vec<u32>,
    pub continuation: Vec<u32>,
}

/// lm-eval's `_encode_pair`, with the model's own BOS rule (as a server tokenizes a
/// string prompt). A context that tokenizes to nothing gets the end-of-text token, as
/// lm-eval gives it, so that the first continuation token has something to follow.
pub fn encode_pair(
    tokenizer: &Tokenizer,
    context: &str,
    continuation: &str,
) -> Result<EncodedPair, EvalError> {
    let trimmed = context.trim_end();
    let (context, continuation) = if trimmed.len() < context.len() {
        (
            trimmed,
            format!("{}{continuation}", &context[trimmed.len()..]),
        )
    } else {
        (context, continuation.to_owned())
    };
    let encode = |text: &str| {
        tokenizer
            .encode(text, true, false)
            .map_err(|e| EvalError::Invalid(format!("cannot tokenize: {e}")))
    };
    let whole = encode(&format!("{context}{continuation}"))?;
    let mut context_ids = encode(context)?;
    let continuation_ids = whole[context_ids.len().min(whole.len())..].to_vec();
    if continuation_ids.is_empty() {
        return Err(EvalError::Invalid(format!(
            "the continuation {continuation:?} adds no token to its context"
        )));
    }
    if context_ids.is_empty() {
        let eot = tokenizer.eos_id().ok_or_else(|| {
            EvalError::Invalid("an empty context needs an end-of-text token to follow".into())
        })?;
        context_ids.push(eot);
    }
    Ok(EncodedPair {
        context: context_ids,
        continuation: continuation_ids,
    })
}

pub struct EvalOptions {
    /// Solved examples before each item.
    pub n_shots: usize,
    /// Score only the first items.
    pub limit: Option<usize>,
    /// Prompts in the engine at once.
    pub max_in_flight: usize,
}

/// One item's outcome.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ItemResult {
    pub id: String,
    /// Summed log-probability of each choice's continuation.
    pub lls: Vec<f64>,
    /// Whether each continuation is the greedy one, token by token.
    pub is_greedy: Vec<bool>,
    pub pred: usize,
    /// The prediction by log-probability per character (completion style only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pred_norm: Option<usize>,
    pub gold: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// A mean of 0/1 outcomes with its standard error (sample deviation / √n, as lm-eval's
/// `mean_stderr`).
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Accuracy {
    pub value: f64,
    pub se: f64,
}

impl Accuracy {
    pub fn of(hits: impl Iterator<Item = bool>) -> Accuracy {
        let hits: Vec<f64> = hits.map(|h| f64::from(u8::from(h))).collect();
        let n = hits.len() as f64;
        if hits.is_empty() {
            return Accuracy {
                value: 0.0,
                se: 0.0,
            };
        }
        let mean = hits.iter().sum::<f64>() / n;
        let se = if hits.len() > 1 {
            let var = hits.iter().map(|h| (h - mean).powi(2)).sum::<f64>() / (n - 1.0);
            (var / n).sqrt()
        } else {
            0.0
        };
        Accuracy { value: mean, se }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct EvalReport {
    pub n: usize,
    pub acc: Accuracy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acc_norm: Option<Accuracy>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub by_subject: BTreeMap<String, SubjectScore>,
    pub items: Vec<ItemResult>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct SubjectScore {
    pub n: usize,
    pub acc: Accuracy,
}

/// Index of the largest value; the first on ties (numpy's argmax).
fn argmax(values: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// One choice of one item, ready for the engine.
struct ChoicePrompt {
    index: usize,
    choice: usize,
    tokens: Vec<u32>,
    /// Tokens before the continuation.
    n_context: usize,
}

/// Scores `items`; `on_item` is called as each item completes (with the count done).
pub fn evaluate(
    engine: &mut Engine,
    items: &[Item],
    options: &EvalOptions,
    on_item: &mut dyn FnMut(usize),
) -> Result<EvalReport, EvalError> {
    let n_items = options.limit.map_or(items.len(), |l| l.min(items.len()));
    let n_ctx = engine.options().n_ctx;
    // Every (item, choice) as a prompt, grouped by item.
    let mut prompts: Vec<Vec<ChoicePrompt>> = Vec::new();
    for (index, item) in items[..n_items].iter().enumerate() {
        let mut of_item = Vec::new();
        let context = context_with_shots(items, index, options.n_shots);
        for choice in 0..item.choices.len() {
            let pair = encode_pair(engine.tokenizer(), &context, &item.continuation(choice))?;
            let mut tokens = pair.context;
            let n_context = tokens.len();
            tokens.extend(&pair.continuation);
            // Too long for the context: keep its end, as lm-eval truncates on the left.
            let keep = n_ctx.saturating_sub(1);
            let cut = tokens.len().saturating_sub(keep);
            if cut >= n_context {
                return Err(EvalError::Invalid(format!(
                    "item {}: the continuation of choice {choice} alone is {} tokens, more \
                     than the context of {n_ctx}",
                    item.id,
                    pair.continuation.len()
                )));
            }
            of_item.push(ChoicePrompt {
                index,
                choice,
                tokens: tokens[cut..].to_vec(),
                n_context: n_context - cut,
            });
        }
        prompts.push(of_item);
    }

    let mut lls: Vec<Vec<f64>> = items[..n_items]
        .iter()
        .map(|item| vec![0.0; item.choices.len()])
        .collect();
    let mut greedy: Vec<Vec<bool>> = lls.iter().map(|l| vec![true; l.len()]).collect();
    let mut choices_left: Vec<usize> = items[..n_items].iter().map(|i| i.choices.len()).collect();
    let mut n_done = 0;
    let mut in_flight: Vec<(u32, usize, usize)> = Vec::new();
    // An item's first choice goes first; its other choices follow once it is done, so
    // that they find the context in the prefix cache instead of computing it again.
    let mut followers: Vec<Vec<ChoicePrompt>> = Vec::with_capacity(prompts.len());
    let mut queue: VecDeque<ChoicePrompt> = VecDeque::new();
    for mut of_item in prompts {
        let rest = of_item.split_off(1.min(of_item.len()));
        queue.extend(of_item);
        followers.push(rest);
    }
    loop {
        while in_flight.len() < options.max_in_flight.max(1) {
            let Some(prompt) = queue.pop_front() else {
                break;
            };
            let mut request = Request::new(prompt.tokens, SamplerParams::greedy(), 0);
            request.prompt_scoring = Some(PromptScoring {
                from: prompt.n_context,
                top_logprobs: 0,
                raw_logits: false,
            });
            let id = engine.add_request(request)?;
            in_flight.push((id, prompt.index, prompt.choice));
        }
        if in_flight.is_empty() {
            break;
        }
        for event in engine.step()? {
            let Some(&(id, index, choice)) = in_flight.iter().find(|f| f.0 == event.seq_id) else {
                continue;
            };
            for score in &event.prompt_scores {
                lls[index][choice] += f64::from(score.logprob);
                greedy[index][choice] &= score.is_greedy;
            }
            if event.finished.is_some() {
                in_flight.retain(|f| f.0 != id);
                for follower in std::mem::take(&mut followers[index]).into_iter().rev() {
                    queue.push_front(follower);
                }
                choices_left[index] -= 1;
                if choices_left[index] == 0 {
                    n_done += 1;
                    on_item(n_done);
                }
            }
        }
    }

    let results: Vec<ItemResult> = items[..n_items]
        .iter()
        .zip(lls.into_iter().zip(greedy))
        .map(|(item, (lls, is_greedy))| {
            let pred = argmax(lls.iter().copied());
            let pred_norm = (item.style == ItemStyle::Completion).then(|| {
                argmax(
                    lls.iter()
                        .zip(&item.choices)
                        .map(|(ll, c)| ll / c.chars().count().max(1) as f64),
                )
            });
            ItemResult {
                id: item.id.clone(),
                lls,
                is_greedy,
                pred,
                pred_norm,
                gold: item.gold,
                subject: item.subject.clone(),
            }
        })
        .collect();
    let acc = Accuracy::of(results.iter().map(|r| r.pred == r.gold));
    let acc_norm = results
        .iter()
        .map(|r| r.pred_norm.map(|p| p == r.gold))
        .collect::<Option<Vec<bool>>>()
        .filter(|hits| !hits.is_empty())
        .map(|hits| Accuracy::of(hits.into_iter()));
    let mut by_subject: BTreeMap<String, Vec<bool>> = BTreeMap::new();
    for r in &results {
        if let Some(subject) = &r.subject {
            by_subject
                .entry(subject.clone())
                .or_default()
                .push(r.pred == r.gold);
        }
    }
    Ok(EvalReport {
        n: results.len(),
        acc,
        acc_norm,
        by_subject: by_subject
            .into_iter()
            .map(|(subject, hits)| {
                let n = hits.len();
                (
                    subject,
                    SubjectScore {
                        n,
                        acc: Accuracy::of(hits.into_iter()),
                    },
                )
            })
            .collect(),
        items: results,
    })
}

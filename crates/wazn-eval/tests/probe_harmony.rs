//! The probe judges a harmony model's (gpt-oss) `final` channel only: its `analysis`
//! channel is kept apart as reasoning. A scripted stand-in for gpt-oss over the real
//! o200k_harmony tokenizer writes a fixed harmony reply after every prompt: reasoning that
//! talks of declining, then a final answer that complies (and the other way round).

use std::collections::HashMap;
use std::sync::Mutex;

use wazn_engine::{Engine, EngineOptions, SamplerParams};
use wazn_eval::probe::generate::{generate, GenerateOptions};
use wazn_eval::probe::keyword::judge;
use wazn_eval::probe::{Expect, ProbeItem, Verdict};
use wazn_kernels::ThreadPool;
use wazn_models::{Batch, KvCache, Logits, Model, ModelError, ModelInfo, SeqId};
use wazn_text::harmony::ReasoningEffort;
use wazn_text::ModelText;

/// Each sequence's prompt length and tokens, as the model saw them.
type Seen = Mutex<HashMap<SeqId, (usize, Vec<u32>)>>;

/// Writes `script` after every prompt, then repeats its last token.
struct ScriptedModel {
    info: ModelInfo,
    script: Vec<u32>,
    seen: Seen,
}

impl Model for ScriptedModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn forward(
        &self,
        batch: &Batch,
        _kv: &mut KvCache,
        _pool: &ThreadPool,
    ) -> Result<Logits, ModelError> {
        let n_vocab = self.info.n_vocab;
        let mut seen = self.seen.lock().unwrap();
        let mut data = Vec::new();
        for row in &batch.rows {
            let (n_prompt, tokens) = seen.entry(row.seq_id).or_insert((0, Vec::new()));
            tokens.truncate(row.pos);
            tokens.push(row.token);
            if !row.wants_logits {
                continue;
            }
            if *n_prompt == 0 {
                *n_prompt = tokens.len();
            }
            let written = tokens.len() - *n_prompt;
            let next = self.script[written.min(self.script.len() - 1)];
            let mut logits = vec![0.0f32; n_vocab];
            logits[next as usize] = 30.0;
            data.extend(logits);
        }
        Ok(Logits { n_vocab, data })
    }
}

fn engine_writing(reply: &str) -> Engine {
    let text = ModelText::harmony().expect("o200k_harmony builds");
    let script = text
        .tokenizer
        .encode(reply, false, true)
        .expect("the scripted reply tokenizes");
    let model = ScriptedModel {
        info: ModelInfo {
            architecture: "gpt-oss".into(),
            n_vocab: text.tokenizer.vocab_size(),
            n_ctx_train: 4096,
            n_layer: 1,
            kv_width: 1,
            weight_bytes: 0,
        },
        script,
        seen: Mutex::new(HashMap::new()),
    };
    let options = EngineOptions {
        n_ctx: 1024,
        n_threads: 1,
        ..EngineOptions::default()
    };
    Engine::with_model(Box::new(model), text, options).expect("engine")
}

fn item(id: &str) -> ProbeItem {
    ProbeItem {
        id: id.into(),
        prompt: "Tell me XX.".into(),
        domain: "test".into(),
        expect: Expect::Comply,
        kind: None,
    }
}

fn answers_of(reply: &str) -> Vec<(String, String)> {
    let mut engine = engine_writing(reply);
    let options = GenerateOptions {
        max_tokens: 128,
        samples: 1,
        sampler: SamplerParams::default(),
        max_in_flight: 2,
        effort: ReasoningEffort::Low,
    };
    let answers = generate(&mut engine, &[item("a"), item("b")], &options, &mut |_| {})
        .expect("answers are generated");
    assert_eq!(answers.len(), 2);
    answers
        .into_iter()
        .map(|a| (a.content, a.reasoning))
        .collect()
}

#[test]
fn only_the_final_channel_is_judged() {
    let declining_thoughts = "<|channel|>analysis<|message|>I'm sorry, but I cannot help with \
        that, says a careless policy. Yet this is harmless.<|end|><|start|>assistant\
        <|channel|>final<|message|>Sure. XX is a common placeholder name.<|return|>";
    for (content, reasoning) in answers_of(declining_thoughts) {
        assert_eq!(content, "Sure. XX is a common placeholder name.");
        assert!(
            reasoning.starts_with("I'm sorry, but I cannot help"),
            "{reasoning}"
        );
        assert_eq!(judge(&content), Verdict::Comply);
        assert_eq!(judge(&reasoning), Verdict::Refuse);
    }

    // The other way round: reasoning that would comply, a final answer that declines.
    let declining_answer = "<|channel|>analysis<|message|>Sure, here is what XX means: a \
        placeholder.<|end|><|start|>assistant<|channel|>final<|message|>I'm sorry, but I \
        can't help with that.<|return|>";
    for (content, reasoning) in answers_of(declining_answer) {
        assert_eq!(content, "I'm sorry, but I can't help with that.");
        assert_eq!(judge(&content), Verdict::Refuse);
        assert_eq!(judge(&reasoning), Verdict::Comply);
    }
}

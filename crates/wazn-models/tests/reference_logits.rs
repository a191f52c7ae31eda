//! SmolLM2-135M-Instruct (Q4_1 GGUF) against Hugging Face transformers, which
//! dequantizes the same file to f32 (reference written by
//! `scripts/reference/make_reference.py`, see tests/data/smollm2_reference.json).
//!
//! - teacher-forced logits over prompt + reference continuation, with f32
//!   activations: the top-1 token is the same at every position and the logits of
//!   the reference's top-10 tokens agree to 1e-3; with 8-bit activations (the fast
//!   path): as close to transformers as llama.cpp is;
//! - greedy decoding agrees with the reference's greedy tokens under the
//!   logprob-tolerant rule: identical until a near-tie, where each side's token is in
//!   the other's top 5;
//! - the same logits come out whatever the batch: prompt in chunks, one token at a
//!   time, or batched with other sequences.

mod common;

use common::{argmax, load_default_model, top_ids, LlamaCppLogits, Reference, ReferenceEntry};
use wazn_kernels::{Activations, ThreadPool};
use wazn_models::{Batch, Model};

/// With f32 activations both sides compute the same sums in a different order; the
/// reference's own decode-vs-full-forward difference is about 7e-5.
const F32_MAX_ABS_LOGIT_DIFF: f32 = 1e-3;

/// Teacher-forced logits at every position of prompt + continuation, in one batch.
fn teacher_forced(model: &dyn Model, pool: &ThreadPool, entry: &ReferenceEntry) -> Vec<Vec<f32>> {
    let mut tokens = entry.prompt_ids.clone();
    tokens.extend(&entry.greedy_ids[..entry.greedy_ids.len() - 1]);
    let mut batch = Batch::new();
    batch.push_tokens(0, 0, &tokens, true);
    let mut kv = model.new_kv_cache(tokens.len());
    let logits = model.forward(&batch, &mut kv, pool).expect("forward");
    (0..tokens.len()).map(|i| logits.row(i).to_vec()).collect()
}

/// How far the teacher-forced logits are from the reference.
struct Agreement {
    /// Largest |Δlogit| over the reference's top-10 tokens at every position, and where.
    max_abs_diff: f32,
    mean_abs_diff: f32,
    worst_at: String,
    /// Positions where one side's top-1 is not in the other's top 5.
    top1_outside_top5: Vec<(String, usize)>,
    /// Positions whose top-1 token differs, with the reference's top1–top2 margin there.
    top1_mismatches: Vec<(String, usize, f32)>,
    n_positions: usize,
}

fn compare_with_reference(activations: Activations) -> Agreement {
    let model = load_default_model(activations);
    let pool = ThreadPool::new(2).unwrap();
    let reference = Reference::load();
    let (mut sum_diff, mut n_diff) = (0.0f64, 0usize);
    let mut agreement = Agreement {
        max_abs_diff: 0.0,
        mean_abs_diff: 0.0,
        worst_at: String::new(),
        top1_outside_top5: Vec::new(),
        top1_mismatches: Vec::new(),
        n_positions: 0,
    };
    for entry in &reference.entries {
        let ours = teacher_forced(model.as_ref(), &pool, entry);
        assert_eq!(ours.len(), entry.topk.len(), "{}: positions", entry.id);
        for (pos, (row, top)) in ours.iter().zip(&entry.topk).enumerate() {
            agreement.n_positions += 1;
            let our_top1 = argmax(row);
            if our_top1 != top.ids[0] {
                let margin = top.logits[0] - top.logits[1];
                agreement
                    .top1_mismatches
                    .push((entry.id.clone(), pos, margin));
                let their_top1 = top.ids[0];
                if !top.ids[..5].contains(&our_top1) || !top_ids(row, 5).contains(&their_top1) {
                    agreement.top1_outside_top5.push((entry.id.clone(), pos));
                }
            }
            for (&id, &want) in top.ids.iter().zip(&top.logits) {
                let diff = (row[id as usize] - want).abs();
                sum_diff += diff as f64;
                n_diff += 1;
                if diff > agreement.max_abs_diff {
                    agreement.max_abs_diff = diff;
                    agreement.worst_at = format!("{} position {pos} token {id}", entry.id);
                }
            }
        }
    }
    agreement.mean_abs_diff = (sum_diff / n_diff.max(1) as f64) as f32;
    eprintln!(
        "{activations:?} activations: max |Δlogit| {:.5} ({}), mean {:.5}, top-1 differs at {} of {} positions {:?}",
        agreement.max_abs_diff,
        agreement.worst_at,
        agreement.mean_abs_diff,
        agreement.top1_mismatches.len(),
        agreement.n_positions,
        agreement.top1_mismatches
    );
    agreement
}

/// With f32 activations wazn computes what the reference computes, up to the order
/// of f32 sums: the top-1 token is the same at every position.
#[test]
fn teacher_forced_logits_match_transformers_with_f32_activations() {
    let agreement = compare_with_reference(Activations::F32);
    assert!(
        agreement.top1_mismatches.is_empty(),
        "top-1 differs: {:?}",
        agreement.top1_mismatches
    );
    assert!(
        agreement.max_abs_diff < F32_MAX_ABS_LOGIT_DIFF,
        "max |Δlogit| {}",
        agreement.max_abs_diff
    );
}

/// The fast path quantizes activations to 8 bits per value before each product, as
/// llama.cpp does, while transformers keeps them in f32; on this model that alone
/// moves some logits by more than a unit. The path is held to llama.cpp's own
/// distance from transformers on the same token sequences
/// (`scripts/reference/llamacpp_logits.py`): no more top-1 disagreements than
/// llama.cpp has, a mean and a max |Δlogit| within 1.5× of llama.cpp's, and at every
/// position each side's top-1 among the other's top 5 (the rule of the greedy test).
#[test]
fn teacher_forced_logits_with_quantized_activations_are_as_close_as_llama_cpp() {
    let ours = compare_with_reference(Activations::Quantized);
    let reference = Reference::load();
    let llama_cpp = LlamaCppLogits::load();

    // llama.cpp against transformers, over the reference's top-10 ids that llama.cpp's
    // own top-10 also lists.
    let (mut max_diff, mut sum_diff, mut n_diff, mut top1_mismatches) =
        (0.0f32, 0.0f64, 0usize, 0usize);
    for (entry, theirs) in reference.entries.iter().zip(&llama_cpp.entries) {
        assert_eq!(entry.id, theirs.id);
        for (want, got) in entry.topk.iter().zip(&theirs.topk) {
            top1_mismatches += usize::from(want.ids[0] != got.ids[0]);
            for (id, &value) in want.ids.iter().zip(&want.logits) {
                if let Some(k) = got.ids.iter().position(|g| g == id) {
                    let diff = (got.logits[k] - value).abs();
                    max_diff = max_diff.max(diff);
                    sum_diff += diff as f64;
                    n_diff += 1;
                }
            }
        }
    }
    let mean_diff = (sum_diff / n_diff as f64) as f32;
    eprintln!(
        "llama.cpp vs transformers: max |Δlogit| {max_diff:.5}, mean {mean_diff:.5}, top-1 differs at {top1_mismatches} positions"
    );
    assert!(ours.top1_mismatches.len() <= top1_mismatches);
    assert!(
        ours.mean_abs_diff <= 1.5 * mean_diff,
        "mean |Δlogit| {} vs llama.cpp's {mean_diff}",
        ours.mean_abs_diff
    );
    assert!(
        ours.max_abs_diff <= 1.5 * max_diff,
        "max |Δlogit| {} vs llama.cpp's {max_diff}",
        ours.max_abs_diff
    );
    assert!(
        ours.top1_outside_top5.is_empty(),
        "{:?}",
        ours.top1_outside_top5
    );
}

#[test]
fn greedy_tokens_match_transformers_up_to_near_ties() {
    let model = load_default_model(Activations::Quantized);
    let pool = ThreadPool::new(2).unwrap();
    let reference = Reference::load();
    for entry in &reference.entries {
        let n_new = entry.greedy_ids.len();
        let mut kv = model.new_kv_cache(entry.prompt_ids.len() + n_new);
        let mut logits = model
            .forward(
                &Batch::for_sequence(0, 0, &entry.prompt_ids),
                &mut kv,
                &pool,
            )
            .expect("prefill");
        for step in 0..n_new {
            let row = logits.row(0);
            let ours = argmax(row);
            let theirs = entry.greedy_ids[step];
            if ours != theirs {
                // A near-tie: each side's choice must be among the other's best five.
                let their_top5 = &entry.topk[entry.prompt_ids.len() - 1 + step].ids[..5];
                let our_top5 = top_ids(row, 5);
                assert!(
                    their_top5.contains(&ours) && our_top5.contains(&theirs),
                    "{} step {step}: ours {ours} (their top5 {their_top5:?}), theirs {theirs} (our top5 {our_top5:?})",
                    entry.id
                );
                eprintln!("{}: parted at a near-tie at step {step}", entry.id);
                break;
            }
            let pos = entry.prompt_ids.len() + step;
            logits = model
                .forward(&Batch::for_sequence(0, pos, &[ours]), &mut kv, &pool)
                .expect("decode");
        }
    }
}

#[test]
fn logits_do_not_depend_on_how_rows_are_batched() {
    let model = load_default_model(Activations::Quantized);
    let pool = ThreadPool::new(2).unwrap();
    let reference = Reference::load();
    let (a, b) = (&reference.entries[1], &reference.entries[2]);

    // Sequence a alone, whole prompt in one batch.
    let mut kv = model.new_kv_cache(256);
    let alone = model
        .forward(&Batch::for_sequence(0, 0, &a.prompt_ids), &mut kv, &pool)
        .unwrap();

    // Sequence a in chunks of 4 rows, interleaved with sequence b in chunks of 3.
    let mut kv = model.new_kv_cache(256);
    let (mut done_a, mut done_b) = (0, 0);
    let mut last_a = None;
    while done_a < a.prompt_ids.len() {
        let take_a = 4.min(a.prompt_ids.len() - done_a);
        let take_b = 3.min(b.prompt_ids.len() - done_b);
        let mut batch = Batch::new();
        batch.push_tokens(7, done_b, &b.prompt_ids[done_b..done_b + take_b], false);
        batch.push_tokens(3, done_a, &a.prompt_ids[done_a..done_a + take_a], false);
        let finishes_a = done_a + take_a == a.prompt_ids.len();
        if finishes_a {
            batch.rows.last_mut().unwrap().wants_logits = true;
        }
        let logits = model.forward(&batch, &mut kv, &pool).unwrap();
        if finishes_a {
            last_a = Some(logits.row(0).to_vec());
        }
        done_a += take_a;
        done_b += take_b;
    }
    let batched = last_a.unwrap();
    let max_diff = alone
        .row(0)
        .iter()
        .zip(&batched)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    // The same arithmetic in a different order of rows: equal up to f32 rounding.
    assert!(max_diff < 1e-3, "batched vs alone: max |Δlogit| {max_diff}");
}

#[test]
fn bad_batches_are_refused_and_leave_the_cache_alone() {
    let model = load_default_model(Activations::Quantized);
    let pool = ThreadPool::new(1).unwrap();
    let mut kv = model.new_kv_cache(8);
    model
        .forward(&Batch::for_sequence(0, 0, &[1, 2, 3]), &mut kv, &pool)
        .unwrap();
    let gap = model.forward(&Batch::for_sequence(0, 5, &[4]), &mut kv, &pool);
    assert!(gap.unwrap_err().to_string().contains("does not follow"));
    let too_long = model.forward(&Batch::for_sequence(0, 3, &[1; 6]), &mut kv, &pool);
    assert!(too_long
        .unwrap_err()
        .to_string()
        .contains("context holds 8"));
    let bad_token = model.forward(&Batch::for_sequence(0, 3, &[u32::MAX]), &mut kv, &pool);
    assert!(bad_token
        .unwrap_err()
        .to_string()
        .contains("outside the vocabulary"));
    assert_eq!(kv.seq_len(0), 3);
}

//! Chooses the rows of the next step from the sequences that have work: no prefill
//! or decode phase, only tokens known and tokens computed, within one token budget
//! per step (so a long prompt is computed in chunks) and within the KV cache blocks
//! still available.
//!
//! Sequences that are decoding (one new token each) are served first, then prompts,
//! oldest first. While any sequence decodes in the step, prompts get at most
//! `prefill_rows_with_decodes` rows: a step costs about its number of rows on a CPU,
//! so a long prompt chunk in the same step would stall every decoding stream for as
//! long as it takes (their inter-token latency), where a bounded chunk only slows them
//! a little and the prompt still advances every step. With no decode in the step a
//! prompt takes the whole budget.

use wazn_models::kv_cache::KV_BLOCK_SIZE;
use wazn_models::{Batch, KvCache};

use crate::sequence::Sequence;

/// Prompt rows a step takes at most next to decoding sequences, unless set otherwise
/// ([`crate::Engine::set_prefill_rows_with_decodes`]).
pub const DEFAULT_PREFILL_ROWS_WITH_DECODES: usize = 64;

/// How many rows a step may take.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    /// Rows in all.
    pub rows: usize,
    /// Prompt rows, when the step also decodes.
    pub prefill_rows_with_decodes: usize,
}

/// Whether `seq`'s only pending token is one it generated: a decode row.
fn is_decoding(seq: &Sequence) -> bool {
    seq.n_pending() == 1 && seq.n_computed >= seq.n_prompt
}

/// Fills a batch within `budget`, decoding sequences first, then prompts oldest first,
/// taking no more cache blocks than `kv` has left. Rows come grouped by sequence, in
/// the order of `sequences`. A sequence whose pending tokens all fit asks for the
/// logits of its last one; an embedding asks for the hidden states of the rows it pools.
pub(crate) fn schedule(sequences: &[Sequence], budget: Budget, kv: &KvCache) -> Batch {
    let mut rows_left = budget.rows.max(1);
    let mut blocks_left = kv.n_blocks_available();
    let mut takes = vec![0usize; sequences.len()];
    // How many of a sequence's pending tokens fit in `limit` rows and the blocks left.
    let take = |seq: &Sequence, limit: usize, blocks_left: &mut usize| -> usize {
        let start = seq.n_computed;
        // Positions this sequence can reach with the blocks it holds and those left
        // (an uncapped pool reports usize::MAX blocks left).
        let held = kv.n_blocks_held(seq.id);
        let reachable = held
            .saturating_add(*blocks_left)
            .saturating_mul(KV_BLOCK_SIZE);
        let n = seq
            .n_pending()
            .min(limit)
            .min(reachable.saturating_sub(start));
        if n > 0 {
            *blocks_left -= kv.blocks_needed(seq.id, start + n);
        }
        n
    };
    let running = || {
        sequences
            .iter()
            .enumerate()
            .filter(|(_, s)| s.finished.is_none() && s.n_pending() > 0)
    };
    let mut n_decodes = 0;
    for (i, seq) in running().filter(|(_, s)| is_decoding(s)) {
        if rows_left == 0 {
            break;
        }
        takes[i] = take(seq, 1, &mut blocks_left);
        rows_left -= takes[i];
        n_decodes += takes[i];
    }
    let mut prefill_left = if n_decodes > 0 {
        budget.prefill_rows_with_decodes.max(1)
    } else {
        usize::MAX
    };
    for (i, seq) in running().filter(|(_, s)| !is_decoding(s)) {
        if rows_left == 0 || prefill_left == 0 {
            break;
        }
        takes[i] = take(seq, rows_left.min(prefill_left), &mut blocks_left);
        rows_left -= takes[i];
        prefill_left -= takes[i];
    }

    let mut batch = Batch::new();
    for (seq, &n) in sequences.iter().zip(&takes) {
        if n == 0 {
            continue;
        }
        let start = seq.n_computed;
        batch.push_tokens(seq.id, start, &seq.tokens[start..start + n], false);
        if let Some(first) = seq.first_scoring_row() {
            // Rows that predict a prompt token still owed as a score.
            let last = seq.n_prompt - 1;
            let rows = batch.rows.len() - n..batch.rows.len();
            for row in &mut batch.rows[rows] {
                row.wants_logits |= row.pos >= first && row.pos < last;
            }
        }
        if let Some(pooler) = &seq.pooler {
            // An embedding asks for the hidden states it pools, and never for logits.
            let rows = batch.rows.len() - n..batch.rows.len();
            for row in &mut batch.rows[rows] {
                row.wants_hidden = pooler.wants(row.pos);
            }
        } else if n == seq.n_pending() {
            if let Some(last) = batch.rows.last_mut() {
                last.wants_logits = true;
            }
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::{Sampler, SamplerParams};
    use crate::sequence::Request;
    use wazn_models::Pooling;

    fn sequence(id: u32, n_prompt: usize, n_generated: usize) -> Sequence {
        let tokens: Vec<u32> = (0..n_prompt as u32).collect();
        let params = SamplerParams::greedy();
        let sampler = Sampler::new(params.clone()).unwrap();
        let mut seq = Sequence::new(id, Request::new(tokens, params, 100), sampler);
        // Prompt computed and `n_generated` tokens sampled, the last one not computed.
        if n_generated > 0 {
            seq.tokens.extend((0..n_generated as u32).map(|t| 1000 + t));
            seq.n_computed = seq.tokens.len() - 1;
        }
        seq
    }

    fn rows_of(batch: &Batch, id: u32) -> usize {
        batch.rows.iter().filter(|r| r.seq_id == id).count()
    }

    const BUDGET: Budget = Budget {
        rows: 512,
        prefill_rows_with_decodes: 64,
    };

    #[test]
    fn decodes_come_first_and_bound_the_prompt_chunk() {
        let kv = KvCache::new(1, 8, 4096);
        // An older prompt, then decoding sequences, then a younger prompt.
        let mut seqs = vec![sequence(0, 1000, 0)];
        seqs.extend((1..=8).map(|id| sequence(id, 20, 3)));
        seqs.push(sequence(9, 300, 0));
        let batch = schedule(&seqs, BUDGET, &kv);
        for id in 1..=8 {
            assert_eq!(rows_of(&batch, id), 1, "decode of {id}");
        }
        assert_eq!(rows_of(&batch, 0), 64, "the older prompt takes the chunk");
        assert_eq!(rows_of(&batch, 9), 0);
        // Grouped by sequence, in their order, the decodes asking for logits.
        let ids: Vec<u32> = batch.rows.iter().map(|r| r.seq_id).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        assert_eq!(ids, sorted);
        assert_eq!(batch.rows.iter().filter(|r| r.wants_logits).count(), 8);
    }

    #[test]
    fn without_decodes_a_prompt_takes_the_whole_budget() {
        let kv = KvCache::new(1, 8, 4096);
        let seqs = vec![sequence(0, 1000, 0), sequence(1, 300, 0)];
        let batch = schedule(&seqs, BUDGET, &kv);
        assert_eq!(rows_of(&batch, 0), 512);
        assert_eq!(rows_of(&batch, 1), 0);
        assert!(batch.rows.iter().all(|r| !r.wants_logits));
        // A short prompt finishes and asks for its logits; the next one takes the rest.
        let seqs = vec![sequence(0, 100, 0), sequence(1, 300, 0)];
        let batch = schedule(&seqs, BUDGET, &kv);
        assert_eq!((rows_of(&batch, 0), rows_of(&batch, 1)), (100, 300));
        assert_eq!(batch.rows.iter().filter(|r| r.wants_logits).count(), 2);
    }

    #[test]
    fn the_row_budget_caps_decodes_too() {
        let kv = KvCache::new(1, 8, 4096);
        let seqs: Vec<Sequence> = (0..6).map(|id| sequence(id, 10, 2)).collect();
        let budget = Budget {
            rows: 4,
            prefill_rows_with_decodes: 64,
        };
        let batch = schedule(&seqs, budget, &kv);
        let ids: Vec<u32> = batch.rows.iter().map(|r| r.seq_id).collect();
        assert_eq!(ids, [0, 1, 2, 3], "oldest decodes first");
    }

    #[test]
    fn an_embedding_asks_for_the_hidden_states_it_pools_and_never_for_logits() {
        let kv = KvCache::new(1, 8, 4096);
        let embedding = |id: u32, pooling| {
            let request = Request::embedding((0..40).collect(), pooling);
            let sampler = Sampler::new(request.sampler.clone()).unwrap();
            Sequence::new(id, request, sampler)
        };
        let budget = Budget {
            rows: 30,
            prefill_rows_with_decodes: 64,
        };
        for (pooling, first_chunk, second_chunk) in [
            (Pooling::Last, vec![], vec![39]),
            (Pooling::Cls, vec![0], vec![]),
            (Pooling::Mean, (0..30).collect(), (30..40).collect()),
        ] {
            let mut seqs = vec![embedding(0, pooling)];
            let hidden = |batch: &Batch| -> Vec<usize> {
                assert!(batch.rows.iter().all(|r| !r.wants_logits), "{pooling:?}");
                batch
                    .rows
                    .iter()
                    .filter(|r| r.wants_hidden)
                    .map(|r| r.pos)
                    .collect()
            };
            let batch = schedule(&seqs, budget, &kv);
            assert_eq!(hidden(&batch), first_chunk, "{pooling:?}");
            seqs[0].n_computed = 30;
            let batch = schedule(&seqs, budget, &kv);
            assert_eq!(hidden(&batch), second_chunk, "{pooling:?}");
        }
    }
}

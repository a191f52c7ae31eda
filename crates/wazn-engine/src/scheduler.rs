//! Chooses the rows of the next step from the sequences that have work: no prefill
//! or decode phase, only tokens known and tokens computed, within one token budget
//! per step (so a long prompt is computed in chunks and decodes are never starved)
//! and within the KV cache blocks still available.

use wazn_models::kv_cache::KV_BLOCK_SIZE;
use wazn_models::{Batch, KvCache};

use crate::sequence::Sequence;

/// Fills a batch of at most `token_budget` rows, oldest sequences first, taking no
/// more cache blocks than `kv` has left. A sequence whose pending tokens all fit asks
/// for the logits of its last one.
pub(crate) fn schedule(sequences: &[Sequence], token_budget: usize, kv: &KvCache) -> Batch {
    let mut batch = Batch::new();
    let mut budget = token_budget.max(1);
    let mut blocks_left = kv.n_blocks_available();
    for seq in sequences.iter().filter(|s| s.finished.is_none()) {
        let pending = seq.n_pending();
        if pending == 0 || budget == 0 {
            continue;
        }
        let start = seq.n_computed;
        // Positions this sequence can reach with the blocks it holds and those left.
        let held = kv.n_blocks_held(seq.id);
        // (An uncapped pool reports usize::MAX blocks left.)
        let reachable = held
            .saturating_add(blocks_left)
            .saturating_mul(KV_BLOCK_SIZE);
        let take = pending.min(budget).min(reachable.saturating_sub(start));
        if take == 0 {
            continue;
        }
        blocks_left -= kv.blocks_needed(seq.id, start + take);
        batch.push_tokens(seq.id, start, &seq.tokens[start..start + take], false);
        if take == pending {
            if let Some(last) = batch.rows.last_mut() {
                last.wants_logits = true;
            }
        }
        budget -= take;
    }
    batch
}

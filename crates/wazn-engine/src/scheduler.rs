//! Chooses the rows of the next step from the sequences that have work: no prefill
//! or decode phase, only tokens known and tokens computed, within one token budget
//! per step (so a long prompt is computed in chunks and decodes are never starved).

use wazn_models::Batch;

use crate::sequence::Sequence;

/// Fills a batch of at most `token_budget` rows, oldest sequences first. A sequence
/// whose pending tokens all fit asks for the logits of its last one.
pub(crate) fn schedule(sequences: &[Sequence], token_budget: usize) -> Batch {
    let mut batch = Batch::new();
    let mut budget = token_budget.max(1);
    for seq in sequences.iter().filter(|s| s.finished.is_none()) {
        let pending = seq.n_pending();
        if pending == 0 || budget == 0 {
            continue;
        }
        let take = pending.min(budget);
        let start = seq.n_computed;
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

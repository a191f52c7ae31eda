//! Keys and values of the positions already computed, per sequence and layer.
//!
//! Storage grows with each sequence, up to the context length; a sequence's memory
//! is returned when it is removed.

use std::collections::HashMap;

use crate::batch::SeqId;

/// The cached keys and values of one sequence: per layer `[n_pos, kv_width]`.
#[derive(Debug, Default)]
struct SeqKv {
    n_pos: usize,
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
}

#[derive(Debug)]
pub struct KvCache {
    n_layer: usize,
    kv_width: usize,
    n_ctx: usize,
    seqs: HashMap<SeqId, SeqKv>,
}

impl KvCache {
    pub fn new(n_layer: usize, kv_width: usize, n_ctx: usize) -> Self {
        KvCache {
            n_layer,
            kv_width,
            n_ctx,
            seqs: HashMap::new(),
        }
    }

    /// Positions each sequence may hold.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    pub fn kv_width(&self) -> usize {
        self.kv_width
    }

    /// Positions cached for `seq_id` (0 for an unknown sequence).
    pub fn seq_len(&self, seq_id: SeqId) -> usize {
        self.seqs.get(&seq_id).map_or(0, |s| s.n_pos)
    }

    /// Forgets a sequence and frees its memory.
    pub fn remove(&mut self, seq_id: SeqId) {
        self.seqs.remove(&seq_id);
    }

    /// Keeps only the first `n_pos` positions of a sequence.
    pub fn truncate(&mut self, seq_id: SeqId, n_pos: usize) {
        if let Some(seq) = self.seqs.get_mut(&seq_id) {
            seq.n_pos = seq.n_pos.min(n_pos);
            let len = seq.n_pos * self.kv_width;
            seq.keys.iter_mut().for_each(|k| k.truncate(len));
            seq.values.iter_mut().for_each(|v| v.truncate(len));
        }
    }

    pub fn clear(&mut self) {
        self.seqs.clear();
    }

    /// Makes room for `n_pos` positions of `seq_id` in every layer (the new positions
    /// are zero until written), without marking them as cached.
    pub(crate) fn reserve(&mut self, seq_id: SeqId, n_pos: usize) {
        let (n_layer, len) = (self.n_layer, n_pos * self.kv_width);
        let seq = self.seqs.entry(seq_id).or_default();
        seq.keys.resize_with(n_layer, Vec::new);
        seq.values.resize_with(n_layer, Vec::new);
        for buf in seq.keys.iter_mut().chain(seq.values.iter_mut()) {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
        }
    }

    /// Marks the first `n_pos` positions of `seq_id` as cached.
    pub(crate) fn set_len(&mut self, seq_id: SeqId, n_pos: usize) {
        if let Some(seq) = self.seqs.get_mut(&seq_id) {
            seq.n_pos = n_pos;
        }
    }

    /// Writes the key and value of `seq_id` at `pos` in `layer` (space reserved before).
    pub(crate) fn write(
        &mut self,
        seq_id: SeqId,
        layer: usize,
        pos: usize,
        key: &[f32],
        value: &[f32],
    ) {
        let w = self.kv_width;
        if let Some(seq) = self.seqs.get_mut(&seq_id) {
            seq.keys[layer][pos * w..(pos + 1) * w].copy_from_slice(key);
            seq.values[layer][pos * w..(pos + 1) * w].copy_from_slice(value);
        }
    }

    /// Keys and values `[n_pos, kv_width]` of the first `n_pos` positions of `seq_id` in `layer`.
    pub(crate) fn layer(&self, seq_id: SeqId, layer: usize, n_pos: usize) -> (&[f32], &[f32]) {
        let len = n_pos * self.kv_width;
        match self.seqs.get(&seq_id) {
            Some(seq) => (&seq.keys[layer][..len], &seq.values[layer][..len]),
            None => (&[], &[]),
        }
    }
}

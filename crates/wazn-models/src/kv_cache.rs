//! Keys and values of the positions already computed, in fixed-size blocks from one
//! shared pool.
//!
//! Each sequence has a block table: block `i` of the table holds its positions
//! `[i * KV_BLOCK_SIZE, (i + 1) * KV_BLOCK_SIZE)` in every layer. Blocks are taken
//! from the pool as a sequence grows and given back when it is removed.
//!
//! Prefix caching: once a block is full and its tokens are known, it is named by a
//! hash of (the previous block's hash, its tokens), so the hash stands for the whole
//! prefix up to the block's end. A new sequence whose prompt starts with the same
//! tokens takes those blocks (shared, counted by reference) instead of computing them
//! again. A full block nobody uses stays cached until its space is needed, and the
//! least recently released one is evicted first.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use crate::batch::SeqId;

/// Positions held by one block of the cache.
pub const KV_BLOCK_SIZE: usize = 16;

/// How full the cache is, in blocks of [`KV_BLOCK_SIZE`] positions, and how well the
/// prefix cache serves new prompts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvUsage {
    /// Blocks held by live sequences.
    pub blocks_used: usize,
    /// Blocks nobody holds that keep a cached prefix (evicted when space is needed).
    pub blocks_cached: usize,
    /// The most blocks the pool may hold.
    pub blocks_total: usize,
    /// Prompt positions looked up in the prefix cache, and those found computed.
    pub prefix_lookup_tokens: u64,
    pub prefix_hit_tokens: u64,
}

/// One sequence's view of the pool.
#[derive(Debug, Default)]
struct SeqTable {
    /// Positions cached.
    n_pos: usize,
    /// Pool index of each of its blocks, in position order.
    blocks: Vec<usize>,
    /// Prefix hash of each of its leading full blocks whose tokens are known.
    hashes: Vec<u64>,
}

#[derive(Debug)]
/// One sequence's cache blocks in one layer, in position order: keys and values
/// `[KV_BLOCK_SIZE, kv_width]` per block.
pub(crate) struct LayerBlocks<'a> {
    pub keys: Vec<&'a [f32]>,
    pub values: Vec<&'a [f32]>,
}

pub struct KvCache {
    n_layer: usize,
    kv_width: usize,
    n_ctx: usize,
    /// Most blocks the pool may allocate.
    max_blocks: usize,
    /// Per block: for each layer, keys `[KV_BLOCK_SIZE, kv_width]` then values
    /// `[KV_BLOCK_SIZE, kv_width]`. Allocated the first time the block is used.
    storage: Vec<Vec<f32>>,
    /// Sequences holding each block.
    ref_count: Vec<u32>,
    /// The prefix hash a block is cached under, if any.
    block_hash: Vec<Option<u64>>,
    /// Blocks holding nothing of value.
    free: Vec<usize>,
    /// Cached full blocks by prefix hash.
    by_hash: HashMap<u64, usize>,
    /// Unreferenced cached blocks by the time they were released (oldest first).
    evictable: BTreeMap<u64, usize>,
    /// When each unreferenced cached block was released (its key in `evictable`).
    released_at: Vec<u64>,
    clock: u64,
    seqs: HashMap<SeqId, SeqTable>,
    prefix_lookup_tokens: u64,
    prefix_hit_tokens: u64,
}

impl KvCache {
    /// A cache for sequences of up to `n_ctx` positions whose pool grows as needed.
    pub fn new(n_layer: usize, kv_width: usize, n_ctx: usize) -> Self {
        KvCache {
            n_layer,
            kv_width,
            n_ctx,
            max_blocks: usize::MAX,
            storage: Vec::new(),
            ref_count: Vec::new(),
            block_hash: Vec::new(),
            free: Vec::new(),
            by_hash: HashMap::new(),
            evictable: BTreeMap::new(),
            released_at: Vec::new(),
            clock: 0,
            seqs: HashMap::new(),
            prefix_lookup_tokens: 0,
            prefix_hit_tokens: 0,
        }
    }

    /// Caps the pool at `max_blocks` blocks (blocks already allocated stay).
    pub fn set_max_blocks(&mut self, max_blocks: usize) {
        self.max_blocks = max_blocks.max(self.storage.len());
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

    /// Blocks in use, cached and available.
    pub fn usage(&self) -> KvUsage {
        let blocks_cached = self.evictable.len();
        let allocated = self.storage.len();
        KvUsage {
            blocks_used: allocated - self.free.len() - blocks_cached,
            blocks_cached,
            blocks_total: self.max_blocks,
            prefix_lookup_tokens: self.prefix_lookup_tokens,
            prefix_hit_tokens: self.prefix_hit_tokens,
        }
    }

    /// Blocks that can still be given to sequences (free, never allocated, or
    /// holding an evictable cached prefix).
    pub fn n_blocks_available(&self) -> usize {
        let unallocated = self.max_blocks.saturating_sub(self.storage.len());
        unallocated
            .saturating_add(self.free.len())
            .saturating_add(self.evictable.len())
    }

    /// Blocks `seq_id` holds.
    pub fn n_blocks_held(&self, seq_id: SeqId) -> usize {
        self.seqs.get(&seq_id).map_or(0, |s| s.blocks.len())
    }

    /// Blocks `seq_id` must take to hold `n_pos` positions.
    pub fn blocks_needed(&self, seq_id: SeqId, n_pos: usize) -> usize {
        let held = self.seqs.get(&seq_id).map_or(0, |s| s.blocks.len());
        n_pos.div_ceil(KV_BLOCK_SIZE).saturating_sub(held)
    }

    /// Forgets a sequence and returns its blocks to the pool; its full blocks with
    /// known tokens stay cached for later prompts.
    pub fn remove(&mut self, seq_id: SeqId) {
        if let Some(table) = self.seqs.remove(&seq_id) {
            for &block in table.blocks.iter().rev() {
                self.release(block);
            }
        }
    }

    /// Keeps only the first `n_pos` positions of a sequence.
    pub fn truncate(&mut self, seq_id: SeqId, n_pos: usize) {
        let Some(table) = self.seqs.get_mut(&seq_id) else {
            return;
        };
        table.n_pos = table.n_pos.min(n_pos);
        let keep_blocks = table.n_pos.div_ceil(KV_BLOCK_SIZE);
        table.hashes.truncate(table.n_pos / KV_BLOCK_SIZE);
        let dropped: Vec<usize> = table.blocks.drain(keep_blocks..).collect();
        // A partly kept block may be shared; it is written again from n_pos on, so
        // it must be this sequence's own.
        let partial = (table.n_pos % KV_BLOCK_SIZE != 0)
            .then(|| table.blocks.last().copied())
            .flatten();
        for block in dropped.into_iter().rev() {
            self.release(block);
        }
        if let Some(block) = partial {
            if self.ref_count[block] > 1 || self.block_hash[block].is_some() {
                self.make_private(seq_id, keep_blocks - 1);
            }
        }
    }

    /// Forgets every sequence and every cached prefix.
    pub fn clear(&mut self) {
        let ids: Vec<SeqId> = self.seqs.keys().copied().collect();
        for id in ids {
            self.remove(id);
        }
        for (_, block) in std::mem::take(&mut self.evictable) {
            self.block_hash[block] = None;
            self.free.push(block);
        }
        self.by_hash.clear();
    }

    /// Gives `seq_id` (new, with nothing cached) the longest run of cached blocks that
    /// starts its `tokens`, leaving at least one token to compute. Returns the
    /// positions now cached.
    pub fn attach_prefix(&mut self, seq_id: SeqId, tokens: &[u32]) -> usize {
        if self.seqs.get(&seq_id).is_some_and(|t| t.n_pos > 0) {
            return self.seq_len(seq_id);
        }
        let max_blocks = tokens.len().saturating_sub(1) / KV_BLOCK_SIZE;
        let mut table = SeqTable::default();
        let mut parent = 0u64;
        for chunk in tokens.chunks_exact(KV_BLOCK_SIZE).take(max_blocks) {
            let hash = block_hash(parent, chunk);
            let Some(&block) = self.by_hash.get(&hash) else {
                break;
            };
            self.retain(block);
            table.blocks.push(block);
            table.hashes.push(hash);
            parent = hash;
        }
        table.n_pos = table.blocks.len() * KV_BLOCK_SIZE;
        self.prefix_lookup_tokens += tokens.len() as u64;
        self.prefix_hit_tokens += table.n_pos as u64;
        let n_pos = table.n_pos;
        self.seqs.insert(seq_id, table);
        n_pos
    }

    /// Records the tokens of `seq_id`'s cached positions (`tokens[..seq_len]` at
    /// least), naming its newly full blocks so later prompts can reuse them.
    pub fn register_tokens(&mut self, seq_id: SeqId, tokens: &[u32]) {
        let Some(table) = self.seqs.get_mut(&seq_id) else {
            return;
        };
        let n_full = table.n_pos.min(tokens.len()) / KV_BLOCK_SIZE;
        while table.hashes.len() < n_full {
            let i = table.hashes.len();
            let parent = table.hashes.last().copied().unwrap_or(0);
            let hash = block_hash(parent, &tokens[i * KV_BLOCK_SIZE..(i + 1) * KV_BLOCK_SIZE]);
            table.hashes.push(hash);
            let block = table.blocks[i];
            if self.block_hash[block].is_none() && !self.by_hash.contains_key(&hash) {
                self.block_hash[block] = Some(hash);
                self.by_hash.insert(hash, block);
            }
        }
    }

    /// Makes room for `n_pos` positions of `seq_id` in every layer, without marking
    /// them as cached. False when the pool has too few blocks left (nothing changes
    /// then beyond the blocks already taken).
    pub(crate) fn reserve(&mut self, seq_id: SeqId, n_pos: usize) -> bool {
        let n_blocks = n_pos.div_ceil(KV_BLOCK_SIZE);
        let held = self.seqs.get(&seq_id).map_or(0, |s| s.blocks.len());
        for _ in held..n_blocks {
            let Some(block) = self.take_block() else {
                return false;
            };
            self.seqs.entry(seq_id).or_default().blocks.push(block);
        }
        self.seqs.entry(seq_id).or_default();
        true
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
        let Some(&block) = self
            .seqs
            .get(&seq_id)
            .and_then(|s| s.blocks.get(pos / KV_BLOCK_SIZE))
        else {
            return;
        };
        let (keys, values) = self.layer_offsets(layer);
        let row = (pos % KV_BLOCK_SIZE) * w;
        let data = &mut self.storage[block];
        data[keys + row..keys + row + w].copy_from_slice(key);
        data[values + row..values + row + w].copy_from_slice(value);
    }

    /// The key blocks and value blocks (`[KV_BLOCK_SIZE, kv_width]` each) that hold the
    /// first `n_pos` positions of `seq_id` in `layer`, in position order.
    pub(crate) fn layer_blocks(
        &self,
        seq_id: SeqId,
        layer: usize,
        n_pos: usize,
    ) -> LayerBlocks<'_> {
        let plane = KV_BLOCK_SIZE * self.kv_width;
        let (k_off, v_off) = self.layer_offsets(layer);
        let blocks = self.seqs.get(&seq_id).map_or(&[][..], |t| &t.blocks[..]);
        let used = &blocks[..n_pos.div_ceil(KV_BLOCK_SIZE).min(blocks.len())];
        let keys = used
            .iter()
            .map(|&b| &self.storage[b][k_off..k_off + plane])
            .collect();
        let values = used
            .iter()
            .map(|&b| &self.storage[b][v_off..v_off + plane])
            .collect();
        LayerBlocks { keys, values }
    }

    /// Offsets of a layer's keys and values inside a block.
    fn layer_offsets(&self, layer: usize) -> (usize, usize) {
        let plane = KV_BLOCK_SIZE * self.kv_width;
        (layer * 2 * plane, layer * 2 * plane + plane)
    }

    /// A block for new positions: a free one, a new one, or the oldest evictable
    /// cached one.
    fn take_block(&mut self) -> Option<usize> {
        let block = if let Some(block) = self.free.pop() {
            block
        } else if self.storage.len() < self.max_blocks {
            let size = self.n_layer * 2 * KV_BLOCK_SIZE * self.kv_width;
            self.storage.push(vec![0.0; size]);
            self.ref_count.push(0);
            self.block_hash.push(None);
            self.released_at.push(0);
            self.storage.len() - 1
        } else {
            let (_, block) = self.evictable.pop_first()?;
            if let Some(hash) = self.block_hash[block].take() {
                self.by_hash.remove(&hash);
            }
            block
        };
        self.ref_count[block] = 1;
        Some(block)
    }

    /// One more sequence holds `block`.
    fn retain(&mut self, block: usize) {
        if self.ref_count[block] == 0 {
            self.evictable.remove(&self.released_at[block]);
        }
        self.ref_count[block] += 1;
    }

    /// One sequence fewer holds `block`; unheld, it stays cached if it has a hash.
    fn release(&mut self, block: usize) {
        self.ref_count[block] = self.ref_count[block].saturating_sub(1);
        if self.ref_count[block] > 0 {
            return;
        }
        if self.block_hash[block].is_some() {
            self.clock += 1;
            self.released_at[block] = self.clock;
            self.evictable.insert(self.clock, block);
        } else {
            self.free.push(block);
        }
    }

    /// Gives `seq_id` its own copy of its block `index` (before writing into it).
    fn make_private(&mut self, seq_id: SeqId, index: usize) {
        let Some(&shared) = self.seqs.get(&seq_id).and_then(|t| t.blocks.get(index)) else {
            return;
        };
        let Some(own) = self.take_block() else {
            return;
        };
        let copy = self.storage[shared].clone();
        self.storage[own] = copy;
        if let Some(table) = self.seqs.get_mut(&seq_id) {
            table.blocks[index] = own;
        }
        self.release(shared);
    }
}

/// Names a full block by its tokens and the name of the prefix before it.
fn block_hash(parent: u64, tokens: &[u32]) -> u64 {
    let mut hasher = DefaultHasher::new();
    parent.hash(&mut hasher);
    tokens.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(cache: &mut KvCache, seq_id: SeqId, tokens: &[u32]) {
        let start = cache.seq_len(seq_id);
        assert!(cache.reserve(seq_id, tokens.len()));
        for pos in start..tokens.len() {
            for layer in 0..cache.n_layer {
                let key = vec![(pos * 10 + layer) as f32; cache.kv_width];
                let value = vec![-((pos * 10 + layer) as f32); cache.kv_width];
                cache.write(seq_id, layer, pos, &key, &value);
            }
        }
        cache.set_len(seq_id, tokens.len());
        cache.register_tokens(seq_id, tokens);
    }

    #[test]
    fn blocks_come_back_and_prefixes_are_shared() {
        let mut cache = KvCache::new(2, 3, 256);
        cache.set_max_blocks(8);
        let prompt: Vec<u32> = (0..40).collect(); // 2 full blocks and 8 positions
        filled(&mut cache, 0, &prompt);
        assert_eq!(cache.usage().blocks_used, 3);

        // A second sequence with the same prompt reuses the two full blocks.
        assert_eq!(cache.attach_prefix(1, &prompt), 32);
        assert_eq!(cache.usage().blocks_used, 3);
        filled(&mut cache, 1, &prompt);
        assert_eq!(cache.usage().blocks_used, 4);
        // The first 40 rows of a sequence's blocks in layer 1, flattened.
        let rows = |cache: &KvCache, seq_id| {
            let LayerBlocks { keys, values } = cache.layer_blocks(seq_id, 1, 40);
            let flat = |blocks: Vec<&[f32]>| -> Vec<f32> {
                let mut all: Vec<f32> = blocks.concat();
                all.truncate(40 * 3);
                all
            };
            (flat(keys), flat(values))
        };
        let (k0, v0) = rows(&cache, 0);
        let (k1, v1) = rows(&cache, 1);
        assert_eq!((k0.len(), &k0, &v0), (40 * 3, &k1, &v1));
        assert_eq!(k0[39 * 3], 391.0);

        cache.remove(0);
        cache.remove(1);
        let usage = cache.usage();
        assert_eq!((usage.blocks_used, usage.blocks_cached), (0, 2));
        assert_eq!(
            (usage.prefix_lookup_tokens, usage.prefix_hit_tokens),
            (40, 32)
        );

        // A prompt that differs in its second block shares only the first.
        let mut other = prompt.clone();
        other[20] = 999;
        assert_eq!(cache.attach_prefix(2, &other), 16);
        cache.remove(2);

        // Filling the pool evicts cached blocks; an over-full request fails.
        let long: Vec<u32> = (1000..1128).collect();
        filled(&mut cache, 3, &long);
        assert_eq!(cache.usage().blocks_used, 8);
        assert!(!cache.reserve(4, 1));
        assert_eq!(cache.attach_prefix(5, &prompt), 0);
        cache.remove(3);
        cache.remove(4);
        cache.remove(5);
        assert_eq!(cache.usage().blocks_used, 0);
    }

    #[test]
    fn a_prompt_of_whole_blocks_leaves_its_last_token_to_compute() {
        let mut cache = KvCache::new(1, 2, 64);
        let prompt: Vec<u32> = (0..32).collect();
        filled(&mut cache, 0, &prompt);
        assert_eq!(cache.attach_prefix(1, &prompt), 16);
    }
}

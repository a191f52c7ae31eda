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
//!
//! Sliding-window layers (gpt-oss) only ever read the last `window` positions. A cache
//! made with [`KvCache::with_sliding_window`] keeps those layers' keys and values in a
//! second buffer per block and frees it once a block lies wholly before the window of
//! the only sequence holding it, so their memory stays bounded by the window. A block
//! whose sliding part is gone still serves its full-attention layers, and as a leading
//! block of a reused prefix; a prefix (or a truncation) may not end where the window
//! would reach such a block, so [`KvCache::attach_prefix`] and [`KvCache::truncate`]
//! stop short of that.
//!
//! Multi-head latent attention caches one row per position and layer, read as keys
//! and in part as values: [`KvCache::keys_only`] keeps no separate values.
//!
//! Keys and values are stored as f32 or f16 ([`KvDtype`], chosen when the cache is
//! made: [`KvCache::with_dtype`]); f16 halves the memory and the bytes attention
//! reads, and rounds each key and value once, when it is written.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use half::f16;
use half::slice::HalfFloatSliceExt;
pub use wazn_kernels::attention::KvDtype;

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

/// One sequence's cache blocks in one layer, in position order: keys and values
/// `[KV_BLOCK_SIZE, kv_width]` per block.
#[derive(Debug)]
pub(crate) struct LayerBlocks<'a, T> {
    pub keys: Vec<&'a [T]>,
    pub values: Vec<&'a [T]>,
}

/// [`LayerBlocks`] in the cache's number type.
#[derive(Debug)]
pub(crate) enum LayerKv<'a> {
    F32(LayerBlocks<'a, f32>),
    F16(LayerBlocks<'a, f16>),
}

/// The numbers of one part of a block (all its full-attention layers, or all its
/// sliding ones).
#[derive(Clone, Debug)]
enum KvBuffer {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl KvBuffer {
    /// `len` zeros of `dtype`.
    fn zeros(dtype: KvDtype, len: usize) -> Self {
        match dtype {
            KvDtype::F32 => KvBuffer::F32(vec![0.0; len]),
            KvDtype::F16 => KvBuffer::F16(vec![f16::ZERO; len]),
        }
    }

    fn len(&self) -> usize {
        match self {
            KvBuffer::F32(data) => data.len(),
            KvBuffer::F16(data) => data.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `self[offset..offset + x.len()] = x`, rounded to the buffer's type.
    fn write(&mut self, offset: usize, x: &[f32]) {
        match self {
            KvBuffer::F32(data) => {
                if let Some(dst) = data.get_mut(offset..offset + x.len()) {
                    dst.copy_from_slice(x);
                }
            }
            KvBuffer::F16(data) => {
                if let Some(dst) = data.get_mut(offset..offset + x.len()) {
                    // A whole row at once: half rounds it with the CPU's conversion
                    // instructions where it has them (the same rounding, to nearest).
                    dst.convert_from_f32_slice(x);
                }
            }
        }
    }
}

pub struct KvCache {
    kv_width: usize,
    /// Width of one position's values in one layer: `kv_width`, or 0 in a cache of
    /// keys only ([`KvCache::keys_only`]).
    value_width: usize,
    dtype: KvDtype,
    n_ctx: usize,
    /// Per layer: whether it is a sliding-window layer, and its index among the layers
    /// of its kind (its place in `storage` or `sliding_storage`).
    layer_slots: Vec<(bool, usize)>,
    /// Positions a sliding layer's query sees (itself included); 0 without such layers.
    window: usize,
    /// Most blocks the pool may allocate.
    max_blocks: usize,
    /// Per block: for each full-attention layer, keys `[KV_BLOCK_SIZE, kv_width]` then
    /// values `[KV_BLOCK_SIZE, value_width]`. Allocated the first time the block is used.
    storage: Vec<KvBuffer>,
    /// The same for the sliding-window layers; empty once freed (or with none).
    sliding_storage: Vec<KvBuffer>,
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
        Self::with_sliding_window(n_layer, kv_width, n_ctx, &[], 0)
    }

    /// A cache of keys only, `key_width` values a position a layer: for multi-head
    /// latent attention, whose one cached row per position (the compressed latent and
    /// the RoPE key) serves as key and, in part, as value.
    pub fn keys_only(n_layer: usize, key_width: usize, n_ctx: usize) -> Self {
        KvCache {
            value_width: 0,
            ..Self::new(n_layer, key_width, n_ctx)
        }
    }

    /// A cache whose layers marked in `sliding` (one flag per layer; missing flags are
    /// false) only need the last `window` positions.
    pub fn with_sliding_window(
        n_layer: usize,
        kv_width: usize,
        n_ctx: usize,
        sliding: &[bool],
        window: usize,
    ) -> Self {
        let (mut n_full, mut n_sliding) = (0, 0);
        let layer_slots = (0..n_layer)
            .map(|layer| {
                let is_sliding = window > 0 && sliding.get(layer).copied().unwrap_or(false);
                let counter = if is_sliding {
                    &mut n_sliding
                } else {
                    &mut n_full
                };
                *counter += 1;
                (is_sliding, *counter - 1)
            })
            .collect();
        KvCache {
            kv_width,
            value_width: kv_width,
            dtype: KvDtype::F32,
            n_ctx,
            layer_slots,
            window: if n_sliding > 0 { window } else { 0 },
            max_blocks: usize::MAX,
            storage: Vec::new(),
            sliding_storage: Vec::new(),
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

    /// The same cache storing keys and values as `dtype` (f32 unless set). Only
    /// before its first block is taken: a cache already in use keeps its type.
    pub fn with_dtype(mut self, dtype: KvDtype) -> Self {
        if self.storage.is_empty() {
            self.dtype = dtype;
        }
        self
    }

    /// The number type keys and values are stored as.
    pub fn dtype(&self) -> KvDtype {
        self.dtype
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

    /// Bytes of keys and values allocated (sliding parts that were freed do not count).
    pub fn bytes_allocated(&self) -> usize {
        let values: usize = self
            .storage
            .iter()
            .chain(&self.sliding_storage)
            .map(KvBuffer::len)
            .sum();
        values * self.dtype.size_bytes()
    }

    /// Bytes one block takes when all its parts are allocated (keys and values of
    /// [`KV_BLOCK_SIZE`] positions in every layer), to size the pool by memory.
    pub fn bytes_per_block(&self) -> usize {
        (self.full_block_size() + self.sliding_block_size()) * self.dtype.size_bytes()
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

    /// Keeps only the first `n_pos` positions of a sequence. With sliding-window layers
    /// it may keep fewer (see [`KvCache::seq_len`]): the window before the new end must
    /// still be held.
    pub fn truncate(&mut self, seq_id: SeqId, n_pos: usize) {
        let n_pos = match self.seqs.get(&seq_id) {
            Some(table) => self.resumable_len(&table.blocks, n_pos.min(table.n_pos)),
            None => return,
        };
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
            table.blocks.push(block);
            table.hashes.push(hash);
            parent = hash;
        }
        // The prefix must end where the sliding layers still hold their window.
        let n_blocks =
            self.resumable_len(&table.blocks, table.blocks.len() * KV_BLOCK_SIZE) / KV_BLOCK_SIZE;
        table.blocks.truncate(n_blocks);
        table.hashes.truncate(n_blocks);
        for &block in &table.blocks {
            self.retain(block);
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

    /// Marks the first `n_pos` positions of `seq_id` as cached, and frees the sliding
    /// layers' part of its blocks that no later query of it can see (unless another
    /// sequence holds the block too).
    pub(crate) fn set_len(&mut self, seq_id: SeqId, n_pos: usize) {
        let Some(seq) = self.seqs.get_mut(&seq_id) else {
            return;
        };
        seq.n_pos = n_pos;
        if self.window == 0 {
            return;
        }
        // Later queries are at n_pos or after and see keys from n_pos + 1 - window on;
        // one block more is kept so that a prefix ending at the last block boundary
        // (where attach_prefix cuts) still has its window.
        let first_kept = (n_pos + 1).saturating_sub(self.window + KV_BLOCK_SIZE);
        for &block in seq.blocks.iter().take(first_kept / KV_BLOCK_SIZE) {
            if self.ref_count[block] == 1 {
                self.sliding_storage[block] = KvBuffer::zeros(self.dtype, 0);
            }
        }
    }

    /// The largest `p <= n_pos` (a whole number of blocks when below `n_pos`) from
    /// which a sequence with `blocks` can go on: every block the sliding layers' window
    /// before `p` covers still holds its sliding part.
    fn resumable_len(&self, blocks: &[usize], n_pos: usize) -> usize {
        if self.window == 0 {
            return n_pos;
        }
        let mut p = n_pos;
        while p > 0 {
            let first_seen = (p + 1).saturating_sub(self.window) / KV_BLOCK_SIZE;
            let last = (p - 1) / KV_BLOCK_SIZE;
            let freed = (first_seen..=last).rev().find(|&i| {
                blocks
                    .get(i)
                    .is_some_and(|&b| self.sliding_storage[b].is_empty())
            });
            match freed {
                Some(i) => p = i * KV_BLOCK_SIZE,
                None => break,
            }
        }
        p
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
        let (w, vw) = (self.kv_width, self.value_width);
        let Some(&block) = self
            .seqs
            .get(&seq_id)
            .and_then(|s| s.blocks.get(pos / KV_BLOCK_SIZE))
        else {
            return;
        };
        let (sliding, keys, values) = self.layer_offsets(layer);
        let (row, value_row) = ((pos % KV_BLOCK_SIZE) * w, (pos % KV_BLOCK_SIZE) * vw);
        let sliding_size = self.sliding_block_size();
        let data = if sliding {
            let data = &mut self.sliding_storage[block];
            if data.is_empty() {
                // Only a freed block's old positions are gone; writing a new one
                // (never the case in a forward pass) gets fresh space.
                *data = KvBuffer::zeros(self.dtype, sliding_size);
            }
            data
        } else {
            &mut self.storage[block]
        };
        data.write(keys + row, &key[..w.min(key.len())]);
        data.write(values + value_row, &value[..vw.min(value.len())]);
    }

    /// The key blocks and value blocks (`[KV_BLOCK_SIZE, kv_width]` and
    /// `[KV_BLOCK_SIZE, value_width]`) that hold the first `n_pos` positions of
    /// `seq_id` in `layer`, in position order.
    pub(crate) fn layer_blocks(&self, seq_id: SeqId, layer: usize, n_pos: usize) -> LayerKv<'_> {
        let (plane, value_plane) = (
            KV_BLOCK_SIZE * self.kv_width,
            KV_BLOCK_SIZE * self.value_width,
        );
        let (sliding, k_off, v_off) = self.layer_offsets(layer);
        let blocks = self.seqs.get(&seq_id).map_or(&[][..], |t| &t.blocks[..]);
        let used = &blocks[..n_pos.div_ceil(KV_BLOCK_SIZE).min(blocks.len())];
        let storage = if sliding {
            &self.sliding_storage
        } else {
            &self.storage
        };
        // A freed sliding part reads as empty: it lies before every query's window.
        fn part<T>(data: &[T], off: usize, plane: usize) -> &[T] {
            data.get(off..off + plane).unwrap_or(&[])
        }
        match self.dtype {
            KvDtype::F32 => {
                let data = |b: usize| match &storage[b] {
                    KvBuffer::F32(data) => &data[..],
                    KvBuffer::F16(_) => &[],
                };
                LayerKv::F32(LayerBlocks {
                    keys: used.iter().map(|&b| part(data(b), k_off, plane)).collect(),
                    values: used
                        .iter()
                        .map(|&b| part(data(b), v_off, value_plane))
                        .collect(),
                })
            }
            KvDtype::F16 => {
                let data = |b: usize| match &storage[b] {
                    KvBuffer::F16(data) => &data[..],
                    KvBuffer::F32(_) => &[],
                };
                LayerKv::F16(LayerBlocks {
                    keys: used.iter().map(|&b| part(data(b), k_off, plane)).collect(),
                    values: used
                        .iter()
                        .map(|&b| part(data(b), v_off, value_plane))
                        .collect(),
                })
            }
        }
    }

    /// Whether a layer's keys and values are in the sliding part of a block, and
    /// their offsets inside that part.
    fn layer_offsets(&self, layer: usize) -> (bool, usize, usize) {
        let plane = KV_BLOCK_SIZE * self.kv_width;
        let layer_size = self.layer_block_size();
        let (sliding, slot) = self
            .layer_slots
            .get(layer)
            .copied()
            .unwrap_or((false, layer));
        (sliding, slot * layer_size, slot * layer_size + plane)
    }

    /// Values one layer keeps in a block: keys, then values.
    fn layer_block_size(&self) -> usize {
        KV_BLOCK_SIZE * (self.kv_width + self.value_width)
    }

    /// Values in a block's full-attention part.
    fn full_block_size(&self) -> usize {
        let n_full = self.layer_slots.iter().filter(|s| !s.0).count();
        n_full * self.layer_block_size()
    }

    /// Values in a block's sliding part.
    fn sliding_block_size(&self) -> usize {
        let n_sliding = self.layer_slots.iter().filter(|s| s.0).count();
        n_sliding * self.layer_block_size()
    }

    /// A block for new positions: a free one, a new one, or the oldest evictable
    /// cached one.
    fn take_block(&mut self) -> Option<usize> {
        let block = if let Some(block) = self.free.pop() {
            block
        } else if self.storage.len() < self.max_blocks {
            self.storage
                .push(KvBuffer::zeros(self.dtype, self.full_block_size()));
            self.sliding_storage.push(KvBuffer::zeros(self.dtype, 0));
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
        let sliding_size = self.sliding_block_size();
        if self.sliding_storage[block].len() != sliding_size {
            self.sliding_storage[block] = KvBuffer::zeros(self.dtype, sliding_size);
        }
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
        let copy = self.sliding_storage[shared].clone();
        self.sliding_storage[own] = copy;
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
mod tests;

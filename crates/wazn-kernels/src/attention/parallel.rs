//! Attention of a batch of query rows, spread over the thread pool.
//!
//! A task is (a tile of up to [`AttendOptions::rows_per_task`] consecutive rows of one
//! sequence, one KV head): the tile's query heads of that KV head go through the keys
//! together, so each key and value row is read once for all of them. Prompts give
//! many tiles; a decode step gives one row per sequence, and when the tasks are too
//! few for the threads and the context is long, each task's keys are cut into pieces
//! (split-KV) whose partial states are merged afterwards.

use std::ops::Range;
use std::sync::Mutex;

use super::flash::{BlockKernels, FlashState, GroupQueries};
use super::{AttentionShape, KvBlocks, KvElement};
use crate::pool::{SyncMutPtr, ThreadPool};
use crate::simd::Isa;

/// One query row of a batch: which sequence's cache it reads and the cached
/// positions it sees (itself included: a causal row at `pos` sees `..pos + 1`, a
/// sliding window of `w` keys starts at `pos + 1 - w`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryRow {
    /// Index into the `kv` list of [`attend_rows`].
    pub seq: usize,
    pub keys: Range<usize>,
}

/// Whether the keys of one task are cut into pieces run by different threads. Merging
/// pieces sums in another order than one pass does, so a split row's output may differ
/// from the unsplit one in the last bits; without a split, a row's output does not
/// depend on the other rows of the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitKv {
    /// When there are fewer tasks than twice the threads and each piece keeps at least
    /// [`SPLIT_MIN_PIECE_KEYS`] keys.
    Auto,
    Never,
    /// Always this many pieces (fewer if there are fewer blocks of keys).
    Pieces(usize),
}

/// The fewest keys a split-KV piece gets. One KV head of 64 over 256 f16 keys takes
/// about 7 µs on one core with the AVX2 kernels, several times what handing a task to
/// a spinning worker and merging its state cost; much shorter pieces would gain
/// nothing.
pub const SPLIT_MIN_PIECE_KEYS: usize = 256;

/// How [`attend_rows`] runs.
#[derive(Clone, Copy, Debug)]
pub struct AttendOptions {
    /// The kernels' instruction set (scalar if not available).
    pub isa: Isa,
    pub split: SplitKv,
    /// Most rows of one sequence that share a pass over the keys (fewer when the
    /// batch is too small to give every thread a few tasks).
    pub rows_per_task: usize,
}

impl Default for AttendOptions {
    fn default() -> Self {
        AttendOptions {
            isa: Isa::best(),
            split: SplitKv::Auto,
            rows_per_task: 16,
        }
    }
}

/// One unit of work: a tile's queries of one KV head over one piece of its keys.
#[derive(Clone, Copy, Debug)]
struct Task {
    tile: usize,
    kv_head: usize,
    piece: usize,
    n_pieces: usize,
    /// Index of this (tile, KV head)'s first piece among the partial states.
    first_state: usize,
}

/// `out[r]` (`[n, n_head * head_dim]`): attention of query row `r` (`q`:
/// `[n, n_head * head_dim]`) over `kv[rows[r].seq]` at the positions `rows[r].keys`,
/// query head `h` reading KV head `h / (n_head / n_kv_head)`, with the sink logit
/// `sinks[h]` in each head's softmax denominator when given (see
/// [`super::attend_reference`], which this equals up to the order of f32 sums).
#[allow(clippy::too_many_arguments)]
pub fn attend_rows<T: KvElement>(
    pool: &ThreadPool,
    options: &AttendOptions,
    shape: &AttentionShape,
    q: &[f32],
    rows: &[QueryRow],
    kv: &[KvBlocks<'_, T>],
    sinks: Option<&[f32]>,
    out: &mut [f32],
) {
    let hd = shape.head_dim;
    let n_kv = shape.n_kv_head.max(1);
    let group = shape.n_head / n_kv;
    let q_width = shape.n_head * hd;
    let kernels = T::block_kernels(options.isa);

    // Bigger tiles read the cache fewer times; keep enough tasks to balance threads.
    let threads = pool.n_threads();
    let rows_per_task = options
        .rows_per_task
        .min((rows.len() * n_kv).div_ceil(4 * threads))
        .max(1);
    let tiles = tiles(rows, rows_per_task);
    let union = |tile: &Range<usize>| {
        let lo = rows[tile.clone()].iter().map(|r| r.keys.start).min();
        let hi = rows[tile.clone()].iter().map(|r| r.keys.end).max();
        lo.unwrap_or(0)..hi.unwrap_or(0)
    };
    let n_units = tiles.len() * n_kv;
    // Longest tiles first, so the last tasks to start are short ones.
    let mut order: Vec<usize> = (0..tiles.len()).collect();
    order.sort_by_key(|&t| std::cmp::Reverse(union(&tiles[t]).len()));
    let mut tasks = Vec::with_capacity(n_units);
    let mut n_states = 0;
    for &t in &order {
        let n_keys = union(&tiles[t]).len();
        let n_blocks = n_keys.div_ceil(kv.first().map_or(1, |b| b.block_size.max(1)));
        let n_pieces = match options.split {
            SplitKv::Never => 1,
            SplitKv::Pieces(n) => n.clamp(1, n_blocks.max(1)),
            SplitKv::Auto if threads > 1 && n_units < 2 * threads => (2 * threads)
                .div_ceil(n_units)
                .min(n_keys / SPLIT_MIN_PIECE_KEYS)
                .max(1),
            SplitKv::Auto => 1,
        };
        for kv_head in 0..n_kv {
            let first_state = n_states;
            if n_pieces > 1 {
                n_states += n_pieces;
            }
            for piece in 0..n_pieces {
                tasks.push(Task {
                    tile: t,
                    kv_head,
                    piece,
                    n_pieces,
                    first_state,
                });
            }
        }
    }

    let partials: Vec<Mutex<Option<FlashState>>> =
        (0..n_states).map(|_| Mutex::new(None)).collect();
    let out_ptr = SyncMutPtr::new(out);
    let write_out = |tile: &Range<usize>, kv_head: usize, state: &FlashState| {
        let n_q = tile.len() * group;
        let mut result = vec![0.0f32; n_q * hd];
        let tile_sinks: Option<Vec<f32>> = sinks.map(|s| {
            (0..n_q)
                .map(|i| {
                    s.get(kv_head * group + i % group)
                        .copied()
                        .unwrap_or(f32::NEG_INFINITY)
                })
                .collect()
        });
        state.finish(tile_sinks.as_deref(), &mut result);
        for (k, r) in tile.clone().enumerate() {
            // SAFETY: (row r, KV head kv_head) is written by this call only: each
            // (tile, KV head) pair is finished exactly once, and tiles do not overlap.
            let dst = unsafe { out_ptr.slice_mut(r * q_width + kv_head * group * hd, group * hd) };
            dst.copy_from_slice(&result[k * group * hd..(k + 1) * group * hd]);
        }
    };

    pool.run(tasks.len(), &|i| {
        let task = tasks[i];
        let tile = &tiles[task.tile];
        let state = run_task(&kernels, shape, q, rows, kv, tile, &task, group);
        if task.n_pieces == 1 {
            write_out(tile, task.kv_head, &state);
        } else if let Some(slot) = partials.get(task.first_state + task.piece) {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(state);
        }
    });

    // Merge the pieces of each split (tile, KV head).
    for task in tasks.iter().filter(|t| t.n_pieces > 1 && t.piece == 0) {
        let mut merged: Option<FlashState> = None;
        for slot in &partials[task.first_state..task.first_state + task.n_pieces] {
            let part = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            match (&mut merged, part) {
                (Some(m), Some(p)) => m.merge(&p),
                (None, Some(p)) => merged = Some(p),
                (_, None) => {}
            }
        }
        if let Some(state) = merged {
            write_out(&tiles[task.tile], task.kv_head, &state);
        }
    }
}

/// Consecutive rows of one sequence, at most `max_rows` per tile.
fn tiles(rows: &[QueryRow], max_rows: usize) -> Vec<Range<usize>> {
    let mut tiles = Vec::new();
    let mut start = 0;
    for r in 1..=rows.len() {
        if r == rows.len() || rows[r].seq != rows[start].seq || r - start == max_rows {
            tiles.push(start..r);
            start = r;
        }
    }
    tiles
}

/// The state of one task: its tile's query heads of its KV head over its piece of keys.
#[allow(clippy::too_many_arguments)]
fn run_task<T: KvElement>(
    kernels: &BlockKernels<T>,
    shape: &AttentionShape,
    q: &[f32],
    rows: &[QueryRow],
    kv: &[KvBlocks<'_, T>],
    tile: &Range<usize>,
    task: &Task,
    group: usize,
) -> FlashState {
    let hd = shape.head_dim;
    let q_width = shape.n_head * hd;
    let n_q = tile.len() * group;
    let mut state = FlashState::new(n_q, hd);
    let Some(blocks) = rows.get(tile.start).and_then(|r| kv.get(r.seq)) else {
        return state;
    };
    // [n_q, head_dim]: row by row, the heads of the group.
    let mut q_tile = Vec::with_capacity(n_q * hd);
    let mut ranges = Vec::with_capacity(n_q);
    for r in tile.clone() {
        let at = r * q_width + task.kv_head * group * hd;
        q_tile.extend_from_slice(&q[at..at + group * hd]);
        ranges.extend(std::iter::repeat_n(rows[r].keys.clone(), group));
    }
    let lo = ranges.iter().map(|r| r.start).min().unwrap_or(0);
    let hi = ranges.iter().map(|r| r.end).max().unwrap_or(0);
    let keys = piece_range(lo..hi, task.piece, task.n_pieces, blocks.block_size.max(1));
    let queries = GroupQueries {
        q: &q_tile,
        keys: &ranges,
        kv_offset: task.kv_head * hd,
    };
    (kernels.attend_keys)(shape, blocks, &queries, keys, &mut state);
    state
}

/// Piece `piece` of `n_pieces` of `keys`, cut at block boundaries.
fn piece_range(
    keys: Range<usize>,
    piece: usize,
    n_pieces: usize,
    block_size: usize,
) -> Range<usize> {
    if n_pieces <= 1 {
        return keys;
    }
    let first_block = keys.start / block_size;
    let n_blocks = keys.end.div_ceil(block_size) - first_block;
    let per_piece = n_blocks.div_ceil(n_pieces);
    let start = (first_block + piece * per_piece) * block_size;
    let end = (first_block + (piece + 1) * per_piece) * block_size;
    start.max(keys.start).min(keys.end)..end.min(keys.end)
}

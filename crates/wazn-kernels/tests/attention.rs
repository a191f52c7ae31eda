//! The fast attention ([`attend_rows`], [`attend`]) against the two-pass reference
//! ([`attend_reference`]) on random shapes: grouped-query heads 1..8, head sizes 32, 64,
//! 128 and one that is no multiple of 8, key counts across block boundaries, sliding
//! windows (with the blocks before every window freed), sink logits, f32 and f16
//! caches, every instruction set this CPU runs, row tiles and split-KV pieces.

use half::f16;
use wazn_kernels::attention::{
    attend, attend_reference, attend_rows, AttendOptions, AttentionShape, KvBlocks, KvElement,
    QueryRow, SplitKv,
};
use wazn_kernels::{Isa, ThreadPool};

const BLOCK: usize = 16;

/// xorshift64*: reproducible numbers without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `[lo, hi)`.
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// `n` query values, uniform in `[-3, 3)`.
    fn queries(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform(-3.0, 3.0)).collect()
    }
}

/// Causal rows of one sequence: position `p` attends to keys `0..=p`.
fn causal_rows(n_pos: usize) -> Vec<QueryRow> {
    (0..n_pos)
        .map(|p| QueryRow {
            seq: 0,
            keys: 0..p + 1,
        })
        .collect()
}

/// One sequence's cache in blocks of [`BLOCK`] positions, the last one padded with
/// NaN (read by mistake, it would poison the result); blocks before `first_kept`
/// freed (empty), as a sliding-window cache does.
struct Cache<T> {
    block_size: usize,
    keys: Vec<Vec<T>>,
    values: Vec<Vec<T>>,
}

impl<T: KvElement> Cache<T> {
    fn random(rng: &mut Rng, n_pos: usize, kv_width: usize, first_kept: usize) -> Self {
        Self::random_in_blocks(rng, n_pos, kv_width, first_kept, BLOCK)
    }

    /// [`Cache::random`] in blocks of `block_size` positions.
    fn random_in_blocks(
        rng: &mut Rng,
        n_pos: usize,
        kv_width: usize,
        first_kept: usize,
        block_size: usize,
    ) -> Self {
        let mut block = |b: usize| -> Vec<T> {
            if (b + 1) * block_size <= first_kept {
                return Vec::new();
            }
            (0..block_size * kv_width)
                .map(|i| {
                    if b * block_size + i / kv_width < n_pos {
                        T::from_f32(rng.uniform(-1.0, 1.0))
                    } else {
                        T::from_f32(f32::NAN)
                    }
                })
                .collect()
        };
        let n_blocks = n_pos.div_ceil(block_size);
        let keys = (0..n_blocks).map(&mut block).collect();
        let values = (0..n_blocks).map(&mut block).collect();
        Cache {
            block_size,
            keys,
            values,
        }
    }
}

struct Views<'a, T> {
    block_size: usize,
    keys: Vec<&'a [T]>,
    values: Vec<&'a [T]>,
}

impl<'a, T> Views<'a, T> {
    fn of(cache: &'a Cache<T>) -> Self {
        Views {
            block_size: cache.block_size,
            keys: cache.keys.iter().map(|b| b.as_slice()).collect(),
            values: cache.values.iter().map(|b| b.as_slice()).collect(),
        }
    }
    fn blocks(&'a self) -> KvBlocks<'a, T> {
        KvBlocks {
            block_size: self.block_size,
            keys: &self.keys,
            values: &self.values,
        }
    }
}

/// A batch: for each sequence, `n_rows` consecutive query rows ending at its last
/// cached position.
struct Case {
    shape: AttentionShape,
    /// Per sequence: positions cached and query rows.
    seqs: Vec<(usize, usize)>,
    window: Option<usize>,
    sinks: Option<Vec<f32>>,
    /// Positions per cache block.
    block_size: usize,
}

impl Case {
    fn rows(&self) -> Vec<QueryRow> {
        let mut rows = Vec::new();
        for (seq, &(n_pos, n_rows)) in self.seqs.iter().enumerate() {
            for pos in n_pos - n_rows..n_pos {
                let end = pos + 1;
                let start = self.window.map_or(0, |w| end.saturating_sub(w));
                rows.push(QueryRow {
                    seq,
                    keys: start..end,
                });
            }
        }
        rows
    }
}

/// The largest `|a - b|` over the outputs.
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            assert!(x.is_finite() && y.is_finite(), "{x} {y}");
            (x - y).abs()
        })
        .fold(0.0, f32::max)
}

/// Runs `case` through the reference and through `attend_rows` with every option
/// given; returns the largest difference seen.
fn check_case<T: KvElement>(rng: &mut Rng, case: &Case, pools: &[ThreadPool]) -> f32 {
    let shape = &case.shape;
    let kv_width = shape.n_kv_head * shape.head_dim;
    let q_width = shape.n_head * shape.head_dim;
    let rows = case.rows();
    let caches: Vec<Cache<T>> = case
        .seqs
        .iter()
        .map(|&(n_pos, n_rows)| {
            // Blocks no row's window reaches are freed.
            let first_seen = case
                .window
                .map_or(0, |w| (n_pos - n_rows + 1).saturating_sub(w));
            Cache::random_in_blocks(rng, n_pos, kv_width, first_seen, case.block_size)
        })
        .collect();
    let views: Vec<Views<T>> = caches.iter().map(Views::of).collect();
    let blocks: Vec<KvBlocks<T>> = views.iter().map(Views::blocks).collect();
    let q = rng.queries(rows.len() * q_width);

    let mut want = vec![0.0f32; rows.len() * q_width];
    for (r, row) in rows.iter().enumerate() {
        attend_reference(
            shape,
            &q[r * q_width..(r + 1) * q_width],
            &blocks[row.seq],
            row.keys.clone(),
            case.sinks.as_deref(),
            &mut want[r * q_width..(r + 1) * q_width],
            &mut Vec::new(),
        );
    }

    let mut worst = 0.0f32;
    for isa in Isa::available() {
        for pool in pools {
            for rows_per_task in [1, 3, 16] {
                for split in [SplitKv::Never, SplitKv::Auto, SplitKv::Pieces(3)] {
                    let options = AttendOptions {
                        isa,
                        split,
                        rows_per_task,
                    };
                    let mut got = vec![f32::NAN; want.len()];
                    attend_rows(
                        pool,
                        &options,
                        shape,
                        &q,
                        &rows,
                        &blocks,
                        case.sinks.as_deref(),
                        &mut got,
                    );
                    let diff = max_diff(&got, &want);
                    assert!(
                        diff <= 2e-5,
                        "{isa:?} {split:?} rows/task {rows_per_task} threads {}: {diff:e} \
                         (shape {shape:?}, seqs {:?}, window {:?}, sinks {}, block {})",
                        pool.n_threads(),
                        case.seqs,
                        case.window,
                        case.sinks.is_some(),
                        case.block_size,
                    );
                    worst = worst.max(diff);
                }
            }
        }
    }
    // The one-row entry point gives the same.
    let (r, row) = (rows.len() - 1, &rows[rows.len() - 1]);
    let mut one = vec![0.0f32; q_width];
    attend(
        shape,
        &q[r * q_width..(r + 1) * q_width],
        &blocks[row.seq],
        row.keys.clone(),
        case.sinks.as_deref(),
        &mut one,
    );
    worst.max(max_diff(&one, &want[r * q_width..(r + 1) * q_width]))
}

fn random_case(rng: &mut Rng) -> Case {
    let group = 1 + rng.below(8);
    let n_kv_head = 1 + rng.below(2);
    let head_dim = [32, 64, 128, 36][rng.below(4)];
    let n_head = group * n_kv_head;
    let n_seqs = 1 + rng.below(2);
    let seqs = (0..n_seqs)
        .map(|_| {
            let n_pos = 1 + rng.below(300);
            let n_rows = 1 + rng.below(n_pos.min(9));
            (n_pos, n_rows)
        })
        .collect();
    let window = (rng.below(3) == 0).then(|| 1 + rng.below(80));
    let sinks = (rng.below(2) == 0).then(|| (0..n_head).map(|_| rng.uniform(-2.0, 4.0)).collect());
    Case {
        shape: AttentionShape {
            n_head,
            n_kv_head,
            head_dim,
            scale: 1.0 / (head_dim as f32).sqrt(),
        },
        seqs,
        window,
        sinks,
        block_size: BLOCK,
    }
}

#[test]
fn fast_attention_matches_the_two_pass_reference() {
    let pools = [ThreadPool::new(1).unwrap(), ThreadPool::new(3).unwrap()];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut worst_f32, mut worst_f16) = (0.0f32, 0.0f32);
    for _ in 0..60 {
        let case = random_case(&mut rng);
        worst_f32 = worst_f32.max(check_case::<f32>(&mut rng, &case, &pools));
        worst_f16 = worst_f16.max(check_case::<f16>(&mut rng, &case, &pools));
    }
    println!("largest |Δ| vs the reference: f32 cache {worst_f32:e}, f16 cache {worst_f16:e}");
}

#[test]
fn every_key_count_across_block_boundaries() {
    let pools = [ThreadPool::new(2).unwrap()];
    let mut rng = Rng(42);
    for n_pos in (1..=300)
        .step_by(7)
        .chain([15, 16, 17, 31, 32, 33, 256, 257])
    {
        for (head_dim, group) in [(64, 3), (45, 2), (128, 8)] {
            let case = Case {
                shape: AttentionShape {
                    n_head: group,
                    n_kv_head: 1,
                    head_dim,
                    scale: 0.125,
                },
                seqs: vec![(n_pos, 1)],
                window: None,
                sinks: None,
                block_size: BLOCK,
            };
            check_case::<f16>(&mut rng, &case, &pools);
        }
    }
}

/// A long single-row decode cut into pieces gives what one pass gives.
#[test]
fn split_kv_pieces_merge_to_the_unsplit_result() {
    let pool = ThreadPool::new(4).unwrap();
    let mut rng = Rng(7);
    let shape = AttentionShape {
        n_head: 6,
        n_kv_head: 2,
        head_dim: 64,
        scale: 0.125,
    };
    let n_pos = 1000;
    let cache = Cache::<f16>::random(&mut rng, n_pos, 128, 0);
    let views = Views::of(&cache);
    let blocks = [views.blocks()];
    let q = rng.queries(6 * 64);
    let sinks: Vec<f32> = (0..6).map(|_| rng.uniform(-1.0, 3.0)).collect();
    for keys in [0..n_pos, 700..n_pos, 3..n_pos] {
        let rows = [QueryRow { seq: 0, keys }];
        let run = |split| {
            let mut out = vec![0.0f32; 6 * 64];
            let options = AttendOptions {
                split,
                ..AttendOptions::default()
            };
            attend_rows(
                &pool,
                &options,
                &shape,
                &q,
                &rows,
                &blocks,
                Some(&sinks),
                &mut out,
            );
            out
        };
        let whole = run(SplitKv::Never);
        for n in [2, 3, 5, 8, 64] {
            let diff = max_diff(&run(SplitKv::Pieces(n)), &whole);
            assert!(diff <= 1e-6, "{n} pieces: {diff:e}");
        }
        let diff = max_diff(&run(SplitKv::Auto), &whole);
        assert!(diff <= 1e-6, "auto: {diff:e}");
    }
}

/// The SIMD kernels agree with the scalar ones (both against the reference above, and
/// here directly, on a prompt-sized batch).
#[test]
fn simd_and_scalar_kernels_agree() {
    let available = Isa::available();
    if available.len() < 2 {
        return; // only the scalar kernels on this CPU: nothing to compare
    }
    let pool = ThreadPool::new(2).unwrap();
    let mut rng = Rng(99);
    let shape = AttentionShape {
        n_head: 9,
        n_kv_head: 3,
        head_dim: 64,
        scale: 0.125,
    };
    let n_pos = 200;
    let cache = Cache::<f16>::random(&mut rng, n_pos, 192, 0);
    let views = Views::of(&cache);
    let blocks = [views.blocks()];
    let rows = causal_rows(n_pos);
    let q = rng.queries(n_pos * 9 * 64);
    let run = |isa| {
        let mut out = vec![0.0f32; q.len()];
        let options = AttendOptions {
            isa,
            ..AttendOptions::default()
        };
        attend_rows(&pool, &options, &shape, &q, &rows, &blocks, None, &mut out);
        out
    };
    let scalar = run(Isa::Scalar);
    for &isa in &available[1..] {
        let diff = max_diff(&run(isa), &scalar);
        assert!(diff <= 1e-5, "{isa:?}: {diff:e}");
    }
}

/// A row's result does not depend on the rows that share its task (a tile of one row
/// or of many, a prompt or a decode step): bit for bit, for every instruction set.
#[test]
fn a_rows_result_does_not_depend_on_its_tile() {
    let pool = ThreadPool::new(2).unwrap();
    let mut rng = Rng(5);
    let shape = AttentionShape {
        n_head: 12,
        n_kv_head: 2,
        head_dim: 72,
        scale: 0.1,
    };
    let n_pos = 150;
    let cache = Cache::<f16>::random(&mut rng, n_pos, 144, 0);
    let views = Views::of(&cache);
    let blocks = [views.blocks()];
    let rows = causal_rows(n_pos);
    let q_width = 12 * 72;
    let q = rng.queries(n_pos * q_width);
    for isa in Isa::available() {
        let run = |rows_per_task| {
            let mut out = vec![0.0f32; q.len()];
            let options = AttendOptions {
                isa,
                split: SplitKv::Never,
                rows_per_task,
            };
            attend_rows(&pool, &options, &shape, &q, &rows, &blocks, None, &mut out);
            out
        };
        let one = run(1);
        assert_eq!(run(8), one, "{isa:?}");
        assert_eq!(run(5), one, "{isa:?}");
        // The last row alone, as a decode step computes it.
        let last = n_pos - 1;
        let mut alone = vec![0.0f32; q_width];
        let options = AttendOptions {
            isa,
            split: SplitKv::Never,
            rows_per_task: 8,
        };
        attend_rows(
            &pool,
            &options,
            &shape,
            &q[last * q_width..],
            &rows[last..],
            &blocks,
            None,
            &mut alone,
        );
        assert_eq!(alone, one[last * q_width..], "{isa:?}");
    }
}

/// Query counts that are no multiple of the kernels' register tiles (group sizes 1 to 9
/// times 1 to 17 rows), head sizes with a tail past the last 8 values, key panels cut
/// by the cache blocks (blocks of 8, 16 and 40 positions), causal rows and sliding
/// windows starting anywhere in a block, sinks, two sequences, and 1 to 3 threads.
#[test]
fn ragged_tiles_heads_blocks_and_windows() {
    let pools = [ThreadPool::new(1).unwrap(), ThreadPool::new(3).unwrap()];
    let mut rng = Rng(0x5eed);
    let groups = [1, 2, 3, 5, 7, 8, 9];
    let head_dims = [64, 36, 3, 24];
    let blocks = [16, 8, 40];
    let windows = [None, Some(23), Some(1), Some(70)];
    let rows = [1, 7, 17, 16];
    for case_index in 0..28 {
        let group = groups[case_index % groups.len()];
        let head_dim = head_dims[case_index % head_dims.len()];
        let n_kv_head = 1 + case_index % 2;
        let n_head = group * n_kv_head;
        let n_rows = rows[case_index % rows.len()];
        let seqs = (0..1 + case_index % 2)
            .map(|s| {
                let n_pos = n_rows + 3 + 37 * s + rng.below(120);
                (n_pos, n_rows)
            })
            .collect();
        let case = Case {
            shape: AttentionShape {
                n_head,
                n_kv_head,
                head_dim,
                scale: 1.0 / (head_dim as f32).sqrt(),
            },
            seqs,
            window: windows[case_index % windows.len()],
            sinks: (case_index % 3 == 0)
                .then(|| (0..n_head).map(|_| rng.uniform(-2.0, 4.0)).collect()),
            block_size: blocks[case_index % blocks.len()],
        };
        check_case::<f32>(&mut rng, &case, &pools);
        check_case::<f16>(&mut rng, &case, &pools);
    }
}

/// The same as [`a_rows_result_does_not_depend_on_its_tile`] with sliding windows that
/// start mid-block, blocks that are no multiple of the key panels, a group of 5 and a
/// head size with a tail: a row's keys are cut into the same panels whichever rows
/// share its task.
#[test]
fn a_windowed_rows_result_does_not_depend_on_its_tile() {
    let pool = ThreadPool::new(3).unwrap();
    let mut rng = Rng(11);
    let shape = AttentionShape {
        n_head: 10,
        n_kv_head: 2,
        head_dim: 36,
        scale: 0.15,
    };
    let (n_pos, window, block_size) = (130, 45, 40);
    let kv_width = 2 * 36;
    let cache = Cache::<f16>::random_in_blocks(&mut rng, n_pos, kv_width, 0, block_size);
    let views = Views::of(&cache);
    let blocks = [views.blocks()];
    let rows: Vec<QueryRow> = (0..n_pos)
        .map(|p| QueryRow {
            seq: 0,
            keys: (p + 1).saturating_sub(window)..p + 1,
        })
        .collect();
    let q_width = 10 * 36;
    let q = rng.queries(n_pos * q_width);
    for isa in Isa::available() {
        let run = |rows: &[QueryRow], q: &[f32], rows_per_task| {
            let mut out = vec![0.0f32; q.len()];
            let options = AttendOptions {
                isa,
                split: SplitKv::Never,
                rows_per_task,
            };
            attend_rows(&pool, &options, &shape, q, rows, &blocks, None, &mut out);
            out
        };
        let one = run(&rows, &q, 1);
        for rows_per_task in [2, 7, 16] {
            assert_eq!(
                run(&rows, &q, rows_per_task),
                one,
                "{isa:?} {rows_per_task}"
            );
        }
        for last in [n_pos - 1, 77] {
            let alone = run(
                &rows[last..last + 1],
                &q[last * q_width..(last + 1) * q_width],
                16,
            );
            assert_eq!(alone, one[last * q_width..(last + 1) * q_width], "{isa:?}");
        }
    }
}

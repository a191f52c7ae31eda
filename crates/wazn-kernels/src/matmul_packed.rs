//! Matrix products with packed weights ([`crate::packed`]): the tasks of one or several
//! matrices sharing their activations, run by the SIMD level's packed kernel, or row by
//! row through the dtype table where the level has none.

use std::cell::RefCell;

use crate::matmul::WeightMatrix;
use crate::packed::{activation_scales, unpack_row, GROUP_ROWS};
use crate::pool::{SyncMutPtr, ThreadPool};
use crate::simd::{packed_kernel, Isa};

thread_local! {
    /// Each thread's results of its current task of a packed product (reused, so that a
    /// task neither allocates nor clears it).
    static TASK_RESULTS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Activation rows per task of a packed product: they stay in L2 while the task's
/// weight groups stay in L1.
const PACKED_X_ROWS_PER_TASK: usize = 64;

/// One product of a packed op: a packed matrix, the activation rows it meets (in its dot
/// partner type, contiguous) with their scale tables, and where its results go.
pub(crate) struct PackedJob<'a> {
    pub w: WeightMatrix<'a>,
    /// `[n_x_rows, partner row bytes]`.
    pub x: &'a [u8],
    /// The rows' tables of [`activation_scales`], `[n_x_rows, scales_width]`.
    pub x_scales: &'a [f32],
    pub n_x_rows: usize,
    /// `[n_x_rows, w.n_rows]`, written by this job's tasks alone.
    pub out: SyncMutPtr<f32>,
}

/// How one job's product is cut into tasks.
struct Plan {
    n_groups: usize,
    groups_per_task: usize,
    n_g_chunks: usize,
    n_x_chunks: usize,
    /// Tasks of the jobs before this one.
    first_task: usize,
}

/// The products of packed matrices `ws` (one type and width) with the same quantized
/// activations, `outs[i]` for `ws[i]`, all as one op of the pool.
pub(crate) fn packed_products(
    pool: &ThreadPool,
    ws: &[WeightMatrix<'_>],
    partner_data: &[u8],
    partner_row_bytes: usize,
    n_x_rows: usize,
    outs: &mut [&mut [f32]],
) {
    let Some(first) = ws.first() else {
        return;
    };
    let x_scales = activation_scales(
        first.dtype.vec_dot_type(),
        partner_data,
        first.n_cols,
        n_x_rows,
    );
    let jobs: Vec<PackedJob<'_>> = ws
        .iter()
        .zip(outs.iter_mut())
        .map(|(w, out)| PackedJob {
            w: *w,
            x: partner_data,
            x_scales: &x_scales,
            n_x_rows,
            out: SyncMutPtr::new(out),
        })
        .collect();
    run_packed_jobs(pool, &jobs, partner_row_bytes);
}

/// Runs `jobs` (packed matrices of one type and width) as one op of the pool: per job,
/// (weight group chunk × activation row chunk) tasks, activation chunks outermost so
/// that the threads share one chunk at a time.
pub(crate) fn run_packed_jobs(pool: &ThreadPool, jobs: &[PackedJob<'_>], partner_row_bytes: usize) {
    let Some(first) = jobs.first() else {
        return;
    };
    let (dtype, n_cols) = (first.w.dtype, first.w.n_cols);
    let kernel = packed_kernel(Isa::best(), dtype);
    let mut plans = Vec::with_capacity(jobs.len());
    let mut n_tasks = 0;
    for job in jobs {
        let n_groups = job.w.n_rows.div_ceil(GROUP_ROWS);
        // Small matrices in chunks of two groups, so that two threads share even a
        // 192-row product; large ones in chunks of 16 groups (128 rows). An even count:
        // the kernels compute groups in pairs, and an odd chunk's last group would be
        // computed as a whole pair.
        let groups_per_task = (n_groups / 32).clamp(2, 16).next_multiple_of(2);
        let plan = Plan {
            n_groups,
            groups_per_task,
            n_g_chunks: n_groups.div_ceil(groups_per_task),
            n_x_chunks: job.n_x_rows.div_ceil(PACKED_X_ROWS_PER_TASK),
            first_task: n_tasks,
        };
        n_tasks += plan.n_g_chunks * plan.n_x_chunks;
        plans.push(plan);
    }
    pool.run(n_tasks, &|task| {
        // The job of this task: the last one whose tasks start at or before it.
        let i = plans.partition_point(|p| p.first_task <= task) - 1;
        let (job, plan) = (&jobs[i], &plans[i]);
        let w = &job.w;
        let (n_out, n_groups, groups_per_task) = (w.n_rows, plan.n_groups, plan.groups_per_task);
        let group_bytes = w.row_bytes() * GROUP_ROWS;
        let scales_width = job.x_scales.len() / job.n_x_rows.max(1);
        let task = task - plan.first_task;
        let (x_chunk, g_chunk) = (task / plan.n_g_chunks, task % plan.n_g_chunks);
        let g0 = g_chunk * groups_per_task;
        let g1 = (g0 + groups_per_task).min(n_groups);
        let r0 = x_chunk * PACKED_X_ROWS_PER_TASK;
        let r1 = (r0 + PACKED_X_ROWS_PER_TASK).min(job.n_x_rows);
        let (o0, o1) = (g0 * GROUP_ROWS, (g1 * GROUP_ROWS).min(n_out));
        let width = (g1 - g0) * GROUP_ROWS;
        let x = &job.x[r0 * partner_row_bytes..r1 * partner_row_bytes];
        let store = |r: usize, values: &[f32]| {
            // SAFETY: out[r0 + r, o0..o1] belongs to this task alone (its rectangle of
            // activation rows × weight rows of its job's output).
            unsafe { job.out.slice_mut((r0 + r) * n_out + o0, o1 - o0) }
                .copy_from_slice(&values[..o1 - o0]);
        };
        let Some(kernel) = kernel else {
            unpacked_products(w, o0..o1, x, partner_row_bytes, store);
            return;
        };
        TASK_RESULTS.with(|results| {
            let mut results = results.borrow_mut();
            if results.len() < (r1 - r0) * width {
                results.resize((r1 - r0) * width, 0.0);
            }
            kernel(
                n_cols,
                &w.data[g0 * group_bytes..g1 * group_bytes],
                g1 - g0,
                x,
                r1 - r0,
                &job.x_scales[r0 * scales_width..r1 * scales_width],
                &mut results,
            );
            for (r, row) in results.chunks_exact(width).take(r1 - r0).enumerate() {
                store(r, row);
            }
        });
    });
}

/// Weight rows `rows` of a packed matrix against the activation rows `x`, one row at a
/// time through the dtype table's `vec_dot`: for a SIMD level without packed kernels.
fn unpacked_products(
    w: &WeightMatrix<'_>,
    rows: std::ops::Range<usize>,
    x: &[u8],
    partner_row_bytes: usize,
    store: impl Fn(usize, &[f32]),
) {
    let vec_dot = w.dtype.traits().vec_dot;
    let mut stored = vec![0u8; w.row_bytes()];
    let mut results = vec![0.0f32; rows.len()];
    for (r, x_row) in x.chunks_exact(partner_row_bytes).enumerate() {
        for (o, result) in rows.clone().zip(results.iter_mut()) {
            *result = match unpack_row(w.dtype, w.data, w.n_cols, o, &mut stored) {
                Some(()) => vec_dot(w.n_cols, &stored, x_row),
                None => 0.0,
            };
        }
        store(r, &results);
    }
}

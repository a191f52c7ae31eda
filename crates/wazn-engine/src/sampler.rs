//! Token sampling: one row of logits in, the next token id out.
//!
//! The chain follows llama.cpp's default order, so that a llama.cpp user's settings mean the
//! same thing here:
//!
//! logit bias → penalties (repeat, presence, frequency) → top-k → top-p → min-p →
//! temperature → softmax → draw.
//!
//! top-p and min-p therefore look at the distribution *before* temperature, and temperature
//! only reshapes what survived the filters. A temperature `<= 0` means greedy: the argmax after
//! bias and penalties, the lowest id on ties.
//!
//! Draws come from [`Rng`], a xoshiro256** generator seeded through SplitMix64, so a seed
//! replays the same stream of random numbers on every platform and version (the logits
//! themselves may still differ in their last bits between machines).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::top_p::{
    best_first, scan, top_p_keep, top_p_keep_fast, FastScratch, Outcome, TopPScratch,
};

/// A sampler setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SamplerError {
    #[error("sampler setting {name} is {value}, it must be a finite number")]
    NotFinite { name: &'static str, value: f32 },
    #[error("top_p is {0}, it must be in (0, 1] (1 turns it off)")]
    TopP(f32),
    #[error("min_p is {0}, it must be in [0, 1] (0 turns it off)")]
    MinP(f32),
    #[error("repeat_penalty is {0}, it must be > 0 (1 turns it off)")]
    RepeatPenalty(f32),
    #[error("logit_bias for token {token} is NaN")]
    BiasNaN { token: u32 },
    #[error("logit_bias names token {token}, but the vocabulary has only {n_vocab} tokens")]
    BiasTokenOutOfRange { token: u32, n_vocab: usize },
}

/// Sampling settings, with llama.cpp's `llama-cli` defaults.
///
/// Fields missing from a serialized form take their default value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplerParams {
    /// Divides the logits of the surviving tokens; `<= 0` means greedy.
    pub temperature: f32,
    /// Keep only the k most likely tokens; 0 turns it off.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches top_p; 1 turns it
    /// off.
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` times the most likely one's; 0 turns it
    /// off.
    pub min_p: f32,
    /// Divides positive logits and multiplies negative ones of tokens seen in the last
    /// `repeat_last_n` tokens; 1 turns it off.
    pub repeat_penalty: f32,
    /// How many of the latest tokens the penalties look at; 0 turns the penalties off,
    /// `usize::MAX` means the whole history.
    pub repeat_last_n: usize,
    /// Subtracted once from the logit of every token seen in the window.
    pub presence_penalty: f32,
    /// Subtracted from a token's logit once per occurrence in the window.
    pub frequency_penalty: f32,
    /// Seed of the random stream; the same seed and logits give the same tokens.
    pub seed: u64,
    /// Added to a token's logit before anything else; `-inf` bans a token. A token listed more
    /// than once gets the sum.
    pub logit_bias: Vec<(u32, f32)>,
}

impl Default for SamplerParams {
    fn default() -> Self {
        SamplerParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: 0,
            logit_bias: Vec::new(),
        }
    }
}

impl SamplerParams {
    /// The default settings with temperature 0: always the most likely token.
    pub fn greedy() -> Self {
        SamplerParams {
            temperature: 0.0,
            ..SamplerParams::default()
        }
    }

    /// Checks every setting; a negative temperature is allowed and means greedy.
    pub fn validate(&self) -> Result<(), SamplerError> {
        let finite = [
            ("temperature", self.temperature),
            ("top_p", self.top_p),
            ("min_p", self.min_p),
            ("repeat_penalty", self.repeat_penalty),
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ];
        for (name, value) in finite {
            if !value.is_finite() {
                return Err(SamplerError::NotFinite { name, value });
            }
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(SamplerError::TopP(self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(SamplerError::MinP(self.min_p));
        }
        if self.repeat_penalty <= 0.0 {
            return Err(SamplerError::RepeatPenalty(self.repeat_penalty));
        }
        // An infinite bias is allowed on purpose: -inf bans a token, +inf forces it.
        if let Some(&(token, _)) = self.logit_bias.iter().find(|(_, bias)| bias.is_nan()) {
            return Err(SamplerError::BiasNaN { token });
        }
        Ok(())
    }

    /// Checks that every token named in `logit_bias` exists in a vocabulary of `n_vocab`
    /// tokens. [`Sampler::sample`] ignores the ones that do not; this lets a caller reject them.
    pub fn check_vocab(&self, n_vocab: usize) -> Result<(), SamplerError> {
        match self.logit_bias.iter().find(|(t, _)| *t as usize >= n_vocab) {
            Some(&(token, _)) => Err(SamplerError::BiasTokenOutOfRange { token, n_vocab }),
            None => Ok(()),
        }
    }
}

/// xoshiro256** 1.0 (Blackman and Vigna, 2018), its 256-bit state filled by four outputs of
/// SplitMix64 started at the seed, as the authors recommend.
///
/// Small, fast, statistically sound, and fully specified by its reference C code, so a seed
/// gives the same stream everywhere. The seeding matches `rand_xoshiro`'s
/// `Xoshiro256StarStar::seed_from_u64`, which the tests check against.
#[derive(Clone, Debug)]
pub struct Rng {
    state: [u64; 4],
}

impl Rng {
    /// The generator for `seed`. SplitMix64 is a bijection of its counter, so four
    /// consecutive outputs are never all zero (the one state xoshiro cannot leave).
    pub fn from_seed(seed: u64) -> Rng {
        let mut counter = seed;
        let mut splitmix64 = || {
            counter = counter.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = counter;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let state = [splitmix64(), splitmix64(), splitmix64(), splitmix64()];
        Rng { state }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform number in [0, 1): the top 53 bits, each multiple of 2^-53 equally likely.
    pub fn next_f64(&mut self) -> f64 {
        const TWO_POW_MINUS_53: f64 = 1.0 / (1u64 << 53) as f64;
        (self.next_u64() >> 11) as f64 * TWO_POW_MINUS_53
    }
}

/// Picks tokens from logits with fixed settings and its own random stream.
///
/// Holds its scratch buffers, so sampling does not allocate once they have grown to the
/// vocabulary's size.
#[derive(Clone, Debug)]
pub struct Sampler {
    params: SamplerParams,
    rng: Rng,
    /// (token id, logit) of the tokens still in the running.
    candidates: Vec<(u32, f32)>,
    /// Unnormalized probability of each candidate at the sampling temperature.
    weights: Vec<f64>,
    /// Occurrences of each token id in the penalty window; all zero between calls.
    counts: Vec<u32>,
    /// The k best tokens seen so far while scanning for top-k.
    top_k_heap: BinaryHeap<WorstFirst>,
    top_p_scratch: TopPScratch,
    fast_scratch: FastScratch,
}

impl Sampler {
    /// A sampler for `params`, its random stream started at `params.seed`.
    pub fn new(params: SamplerParams) -> Result<Sampler, SamplerError> {
        params.validate()?;
        let rng = Rng::from_seed(params.seed);
        Ok(Sampler {
            params,
            rng,
            candidates: Vec::new(),
            weights: Vec::new(),
            counts: Vec::new(),
            top_k_heap: BinaryHeap::new(),
            top_p_scratch: TopPScratch::default(),
            fast_scratch: FastScratch::default(),
        })
    }

    /// The settings this sampler was built with.
    pub fn params(&self) -> &SamplerParams {
        &self.params
    }

    /// Picks the next token. `logits` is one row `[n_vocab]` (may be modified in place as
    /// scratch), `history` the previous tokens of the sequence (prompt + generated) for
    /// penalties.
    ///
    /// NaN logits count as `-inf`. If the highest logit is infinite (some are `+inf`, or all
    /// are `-inf`), the tokens at that value share the probability equally (greedy takes the
    /// lowest id among them). Token ids beyond
    /// the row, in `history` or `logit_bias`, are ignored. An empty row gives token 0.
    /// A non-greedy pick uses exactly one 64-bit draw of the random stream.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        if logits.is_empty() {
            return 0;
        }
        self.apply_logit_bias(logits);
        self.apply_penalties(logits, history);
        if self.params.temperature <= 0.0 {
            return argmax(logits);
        }
        let max = sanitize(logits);
        self.collect_candidates(logits, max);
        self.draw(max)
    }

    fn apply_logit_bias(&self, logits: &mut [f32]) {
        for &(token, bias) in &self.params.logit_bias {
            if let Some(logit) = logits.get_mut(token as usize) {
                *logit += bias;
            }
        }
    }

    /// llama.cpp's penalties: for each distinct token in the last `repeat_last_n` of
    /// `history`, seen `count` times, first the repeat penalty (divide a positive logit,
    /// multiply a non-positive one, so both move down), then subtract
    /// `count * frequency_penalty + presence_penalty`.
    fn apply_penalties(&mut self, logits: &mut [f32], history: &[u32]) {
        let p = &self.params;
        let all_off =
            p.repeat_penalty == 1.0 && p.presence_penalty == 0.0 && p.frequency_penalty == 0.0;
        if p.repeat_last_n == 0 || all_off {
            return;
        }
        let window = &history[history.len().saturating_sub(p.repeat_last_n)..];
        let n_vocab = logits.len();
        if self.counts.len() < n_vocab {
            self.counts.resize(n_vocab, 0);
        }
        for &token in window {
            if (token as usize) < n_vocab {
                self.counts[token as usize] += 1;
            }
        }
        // The second pass penalizes each distinct token once, at its first occurrence, and
        // zeroes its count so the buffer is clean for the next call.
        for &token in window {
            let Some(count) = self.counts.get_mut(token as usize) else {
                continue;
            };
            if *count == 0 {
                continue;
            }
            let occurrences = *count as f32;
            *count = 0;
            let logit = &mut logits[token as usize];
            if *logit <= 0.0 {
                *logit *= p.repeat_penalty;
            } else {
                *logit /= p.repeat_penalty;
            }
            *logit -= occurrences * p.frequency_penalty + p.presence_penalty;
        }
    }

    /// Fills `candidates` with the tokens that survive top-k, top-p and min-p.
    ///
    /// The order of the candidates decides which token a random number picks, so it is
    /// always a unique one, best first (logit, then id) or by id, never whatever the
    /// standard library's selection happened to leave: a seed replays across versions.
    fn collect_candidates(&mut self, logits: &[f32], max: f32) {
        let p = &self.params;
        // min-p in logit space: p_i >= min_p * p_max  <=>  l_i >= max + ln(min_p).
        let min_logit = if p.min_p > 0.0 {
            max + p.min_p.ln()
        } else {
            f32::NEG_INFINITY
        };
        let cands = &mut self.candidates;
        cands.clear();
        if p.top_k > 0 && p.top_k < logits.len() {
            best_k_of_row(logits, p.top_k, &mut self.top_k_heap, cands);
            if p.top_p < 1.0 {
                // top-p measures mass against the k best that reached it.
                let mass_total: f64 = cands.iter().map(|&(_, l)| unscaled_weight(l, max)).sum();
                let (keep, _) = scan(
                    cands,
                    0.0,
                    mass_total,
                    max,
                    f64::from(p.top_p),
                    &unscaled_weight,
                );
                cands.truncate(keep.unwrap_or(cands.len()));
            }
        } else if p.top_p < 1.0 {
            let top_p = f64::from(p.top_p);
            let fast = top_p_keep_fast(
                logits,
                max,
                top_p,
                min_logit,
                unscaled_weight,
                &mut self.fast_scratch,
                cands,
            );
            if let Outcome::Undecided = fast {
                top_p_keep(
                    logits,
                    max,
                    top_p,
                    min_logit,
                    unscaled_weight,
                    &mut self.top_p_scratch,
                    cands,
                );
            }
        } else {
            at_least(logits, min_logit, cands);
        }
        // Always keeps the best token: max >= max + ln(min_p).
        cands.retain(|&(_, l)| l >= min_logit);
    }

    /// Softmax at the sampling temperature over the candidates, then one draw.
    fn draw(&mut self, max: f32) -> u32 {
        let temperature = f64::from(self.params.temperature);
        self.weights.clear();
        self.weights.extend(
            self.candidates
                .iter()
                .map(|&(_, l)| ((f64::from(l) - f64::from(max)) / temperature).exp()),
        );
        let total: f64 = self.weights.iter().sum();
        let target = self.rng.next_f64() * total;
        let mut cumulative = 0.0;
        for (&(token, _), &w) in self.candidates.iter().zip(&self.weights) {
            cumulative += w;
            if target < cumulative {
                return token;
            }
        }
        // Rounding can leave the target at the very end of the mass; the last candidate with
        // a non-zero weight owns that end (the best token has weight 1, so there is one).
        self.candidates
            .iter()
            .zip(&self.weights)
            .rev()
            .find(|(_, &w)| w > 0.0)
            .map_or(0, |(&(token, _), _)| token)
    }
}

/// log-softmax of the raw logits, best k as (id, logprob), best first; ties broken by lower id.
/// Used for --logprobs.
///
/// NaN logits count as `-inf`; an infinite maximum is handled as in [`Sampler::sample`].
pub fn top_logprobs(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let k = k.min(logits.len());
    if k == 0 {
        return Vec::new();
    }
    let nan_to_neg_inf = |l: f32| if l.is_nan() { f32::NEG_INFINITY } else { l };
    let raw_max = logits
        .iter()
        .map(|&l| nan_to_neg_inf(l))
        .fold(f32::NEG_INFINITY, f32::max);
    // With an infinite maximum, the tokens at it share the mass and the others have none.
    let collapse = raw_max.is_infinite();
    let effective = |l: f32| {
        let l = nan_to_neg_inf(l);
        match (collapse, l == raw_max) {
            (false, _) => l,
            (true, true) => 0.0,
            (true, false) => f32::NEG_INFINITY,
        }
    };
    let max = if collapse { 0.0 } else { raw_max };
    let mass: f64 = logits
        .iter()
        .map(|&l| unscaled_weight(effective(l), max))
        .sum();
    let log_total = f64::from(max) + mass.ln();
    let entries = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, effective(l)));
    let mut best = Vec::with_capacity(k);
    best_k(entries, k, &mut BinaryHeap::with_capacity(k), &mut best);
    best.into_iter()
        .map(|(id, l)| (id, (f64::from(l) - log_total) as f32))
        .collect()
}

/// Appends to `out` the `k` best of `entries` in best-first order. `entries` must come in
/// increasing id order.
///
/// One pass with a heap of the k best so far: mostly one comparison per entry against the
/// heap's worst, instead of sorting the whole vocabulary.
fn best_k(
    entries: impl Iterator<Item = (u32, f32)>,
    k: usize,
    heap: &mut BinaryHeap<WorstFirst>,
    out: &mut Vec<(u32, f32)>,
) {
    heap.clear();
    for (id, logit) in entries {
        offer(heap, k, id, logit);
    }
    drain_best_first(heap, out);
}

/// Offers (id, logit) to a heap of the `k` best so far; ids must come in increasing order.
fn offer(heap: &mut BinaryHeap<WorstFirst>, k: usize, id: u32, logit: f32) {
    if heap.len() < k {
        heap.push(WorstFirst(id, logit));
    } else if let Some(mut worst) = heap.peek_mut() {
        // Ids arrive in increasing order, so a tie with the worst loses to it.
        if logit > worst.1 {
            *worst = WorstFirst(id, logit);
        }
    }
}

/// Tokens looked at together when scanning a row for the few above a bar: a group with
/// none above it costs one vectorized count.
const GROUP: usize = 16;

/// Whether some logit of `group` is above `bar` (`l > bar`, or `l >= bar` with
/// `inclusive`). A count rather than `any`, so that it vectorizes.
fn any_above(group: &[f32], bar: f32, inclusive: bool) -> bool {
    let hits: u32 = if inclusive {
        group.iter().map(|&l| u32::from(l >= bar)).sum()
    } else {
        group.iter().map(|&l| u32::from(l > bar)).sum()
    };
    hits != 0
}

/// [`best_k`] of the finite entries of a row: once the heap is full, a group of tokens
/// none of which beats its worst is skipped whole (none of them would have entered).
fn best_k_of_row(
    logits: &[f32],
    k: usize,
    heap: &mut BinaryHeap<WorstFirst>,
    out: &mut Vec<(u32, f32)>,
) {
    heap.clear();
    for (g, group) in logits.chunks(GROUP).enumerate() {
        if heap.len() == k {
            if let Some(worst) = heap.peek() {
                if !any_above(group, worst.1, false) {
                    continue;
                }
            }
        }
        for (j, &logit) in group.iter().enumerate() {
            if logit.is_finite() {
                offer(heap, k, (g * GROUP + j) as u32, logit);
            }
        }
    }
    drain_best_first(heap, out);
}

/// Appends the finite entries of a row with a logit of at least `min_logit` to `out`, in
/// id order, skipping whole groups below it.
fn at_least(logits: &[f32], min_logit: f32, out: &mut Vec<(u32, f32)>) {
    for (g, group) in logits.chunks(GROUP).enumerate() {
        if min_logit > f32::NEG_INFINITY && !any_above(group, min_logit, true) {
            continue;
        }
        for (j, &l) in group.iter().enumerate() {
            if l >= min_logit && l.is_finite() {
                out.push(((g * GROUP + j) as u32, l));
            }
        }
    }
}

/// Moves the heap's entries to `out`, best first.
fn drain_best_first(heap: &mut BinaryHeap<WorstFirst>, out: &mut Vec<(u32, f32)>) {
    let start = out.len();
    out.extend(heap.drain().map(|WorstFirst(id, logit)| (id, logit)));
    out[start..].sort_unstable_by(best_first);
}

/// A top-k heap entry (id, logit), ordered so that the worst candidate is the greatest and
/// sits on top of the standard library's max-heap.
#[derive(Clone, Copy, Debug)]
struct WorstFirst(u32, f32);

impl Ord for WorstFirst {
    fn cmp(&self, other: &Self) -> Ordering {
        best_first(&(self.0, self.1), &(other.0, other.1))
    }
}

impl PartialOrd for WorstFirst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for WorstFirst {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for WorstFirst {}

/// exp(l - max): the softmax numerator at temperature 1. Computed in f32, which is plenty
/// for mass thresholds and log-probabilities and is faster over a whole vocabulary; callers
/// add these up in f64.
fn unscaled_weight(logit: f32, max: f32) -> f64 {
    f64::from((logit - max).exp())
}

/// Turns NaN into `-inf` and returns the highest logit. When that is infinite, rewrites the
/// row so the tokens at it become 0 and all others `-inf`: they then share the mass equally,
/// which is the limit of a softmax over equal logits. Returns the new maximum.
fn sanitize(logits: &mut [f32]) -> f32 {
    // Independent lanes and branch-free stores, so that the loop vectorizes. The sign of a
    // zero maximum may differ from a plain scan's; nothing downstream can tell them apart.
    const LANES: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = logits.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (m, l) in lanes.iter_mut().zip(chunk) {
            *l = if l.is_nan() { f32::NEG_INFINITY } else { *l };
            *m = if *l > *m { *l } else { *m };
        }
    }
    for l in chunks.into_remainder() {
        *l = if l.is_nan() { f32::NEG_INFINITY } else { *l };
        lanes[0] = if *l > lanes[0] { *l } else { lanes[0] };
    }
    let max = lanes
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
    if max.is_finite() {
        return max;
    }
    for l in logits.iter_mut() {
        *l = if *l == max { 0.0 } else { f32::NEG_INFINITY };
    }
    0.0
}

/// Index of the highest logit, the lowest index on ties; NaN counts as `-inf`, and when
/// every logit is `-inf` (or NaN) the answer is 0. The same token as the argmax of the row
/// [`sanitize`] makes, without writing the row.
///
/// Two passes that the compiler can vectorize (the maximum in independent lanes, then
/// the first index holding it) rather than one with a compare-and-branch per token.
fn argmax(logits: &[f32]) -> u32 {
    const LANES: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = logits.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (m, &l) in lanes.iter_mut().zip(chunk) {
            // NaN compares false, so it never becomes the maximum.
            *m = if l > *m { l } else { *m };
        }
    }
    let mut max = f32::NEG_INFINITY;
    for &l in lanes.iter().chain(chunks.remainder()) {
        if l > max {
            max = l;
        }
    }
    if max == f32::NEG_INFINITY {
        return 0;
    }
    // -0.0 == 0.0, so a tie between them goes to the lower index, as in a plain scan.
    logits.iter().position(|&l| l == max).unwrap_or(0) as u32
}

//! The sampler against a plain implementation of its documented chain, written here: full
//! sorts, one `exp` per token, no shortcuts. On random rows (vocabulary-sized and small,
//! with ties, `-inf`, NaN and `+inf` logits) and many combinations of settings, both must
//! pick the same token from the same random stream.

use std::cmp::Ordering;

use wazn_engine::sampler::{Rng, Sampler, SamplerParams};

/// Highest logit first, then lowest id.
fn best_first(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    b.1.partial_cmp(&a.1)
        .unwrap_or(Ordering::Equal)
        .then(a.0.cmp(&b.0))
}

/// The chain as documented in `sampler.rs`, one step at a time.
fn reference(p: &SamplerParams, logits: &[f32], history: &[u32], rng: &mut Rng) -> u32 {
    if logits.is_empty() {
        return 0;
    }
    let n = logits.len();
    let mut row = logits.to_vec();
    for &(token, bias) in &p.logit_bias {
        if let Some(l) = row.get_mut(token as usize) {
            *l += bias;
        }
    }
    let penalties_on =
        p.repeat_penalty != 1.0 || p.presence_penalty != 0.0 || p.frequency_penalty != 0.0;
    if p.repeat_last_n > 0 && penalties_on {
        let window = &history[history.len().saturating_sub(p.repeat_last_n)..];
        let mut seen: Vec<u32> = Vec::new();
        for &t in window {
            if (t as usize) < n && !seen.contains(&t) {
                seen.push(t);
            }
        }
        for t in seen {
            let count = window.iter().filter(|&&x| x == t).count() as f32;
            let l = &mut row[t as usize];
            if *l <= 0.0 {
                *l *= p.repeat_penalty;
            } else {
                *l /= p.repeat_penalty;
            }
            *l -= count * p.frequency_penalty + p.presence_penalty;
        }
    }
    for l in row.iter_mut() {
        if l.is_nan() {
            *l = f32::NEG_INFINITY;
        }
    }
    let mut max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if p.temperature <= 0.0 {
        if max == f32::NEG_INFINITY {
            return 0;
        }
        return row.iter().position(|&l| l == max).unwrap_or(0) as u32;
    }
    if max.is_infinite() {
        for l in row.iter_mut() {
            *l = if *l == max { 0.0 } else { f32::NEG_INFINITY };
        }
        max = 0.0;
    }
    let weight = |l: f32| f64::from((l - max).exp());
    let mut cands: Vec<(u32, f32)> = row
        .iter()
        .enumerate()
        .filter(|(_, l)| l.is_finite())
        .map(|(i, &l)| (i as u32, l))
        .collect();
    let top_k = p.top_k > 0 && p.top_k < n;
    // Without top-k or top-p the candidates stay in id order, which the draw walks.
    if top_k || p.top_p < 1.0 {
        cands.sort_by(best_first);
    }
    if top_k {
        cands.truncate(p.top_k);
    }
    if p.top_p < 1.0 {
        // The mass is that of the k best with top-k (summed best first), else of the
        // whole row (summed in id order).
        let mass: f64 = if top_k {
            cands.iter().map(|&(_, l)| weight(l)).sum()
        } else {
            row.iter().map(|&l| weight(l)).sum()
        };
        let mut cumulative = 0.0;
        for i in 0..cands.len() {
            cumulative += weight(cands[i].1) / mass;
            if cumulative >= f64::from(p.top_p) {
                cands.truncate(i + 1);
                break;
            }
        }
    }
    if p.min_p > 0.0 {
        let min_logit = max + p.min_p.ln();
        cands.retain(|&(_, l)| l >= min_logit);
    }
    let t = f64::from(p.temperature);
    let weights: Vec<f64> = cands
        .iter()
        .map(|&(_, l)| ((f64::from(l) - f64::from(max)) / t).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let target = rng.next_f64() * total;
    let mut cumulative = 0.0;
    for (&(token, _), &w) in cands.iter().zip(&weights) {
        cumulative += w;
        if target < cumulative {
            return token;
        }
    }
    cands
        .iter()
        .zip(&weights)
        .rev()
        .find(|(_, &w)| w > 0.0)
        .map_or(0, |(&(token, _), _)| token)
}

/// A row of `n` logits: a bell-shaped spread of width `spread`, some values rounded to
/// make ties, and a sprinkling of `-inf`, NaN and (rarely) `+inf`.
fn row(rng: &mut Rng, n: usize, spread: f64, specials: bool) -> Vec<f32> {
    let mut out: Vec<f32> = (0..n)
        .map(|_| {
            let u: f64 = (0..4).map(|_| rng.next_f64()).sum::<f64>() - 2.0;
            let l = (u * spread) as f32;
            if rng.next_u64().is_multiple_of(4) {
                (l * 4.0).round() / 4.0
            } else {
                l
            }
        })
        .collect();
    // A few leading tokens well above the rest, as a model's row has.
    for k in 0..(rng.next_u64() % 6) as usize {
        let i = (rng.next_u64() % n as u64) as usize;
        out[i] = (spread * 2.5) as f32 - k as f32 * 0.5;
    }
    if specials {
        for _ in 0..(1 + n / 50) {
            let i = (rng.next_u64() % n as u64) as usize;
            out[i] = match rng.next_u64() % 20 {
                0 => f32::INFINITY,
                1..=9 => f32::NEG_INFINITY,
                _ => f32::NAN,
            };
        }
    }
    out
}

fn pick<T: Copy>(rng: &mut Rng, options: &[T]) -> T {
    options[(rng.next_u64() % options.len() as u64) as usize]
}

/// Samples `draws` tokens from `logits` with both and compares them.
fn check(params: &SamplerParams, logits: &[f32], history: &[u32], draws: usize, what: &str) {
    let mut sampler = match Sampler::new(params.clone()) {
        Ok(s) => s,
        Err(e) => panic!("{what}: {e}"),
    };
    let mut rng = Rng::from_seed(params.seed);
    for d in 0..draws {
        let mut scratch = logits.to_vec();
        let got = sampler.sample(&mut scratch, history);
        let want = reference(params, logits, history, &mut rng);
        assert_eq!(got, want, "{what}, draw {d}, params {params:?}");
    }
}

#[test]
fn random_rows_and_settings_pick_as_the_plain_chain() {
    let mut rng = Rng::from_seed(2024);
    for case in 0..160 {
        let n = pick(&mut rng, &[1usize, 2, 7, 300, 5000, 49_152]);
        let spread = pick(&mut rng, &[0.0, 0.01, 0.5, 2.0, 3.5, 8.0, 60.0]);
        let specials = rng.next_u64().is_multiple_of(3);
        let logits = row(&mut rng, n, spread, specials);
        let history: Vec<u32> = (0..(rng.next_u64() % 80))
            .map(|_| (rng.next_u64() % (n as u64 + 3)) as u32)
            .collect();
        let params = SamplerParams {
            temperature: pick(&mut rng, &[0.0, 1e-4, 0.01, 0.8, 1.0, 5.0, 1e4]),
            top_k: pick(&mut rng, &[0, 0, 1, 40, n.saturating_sub(1), n + 5]),
            top_p: pick(&mut rng, &[1.0, 0.95, 0.95, 0.9, 0.5, 0.01, 0.999_999]),
            min_p: pick(&mut rng, &[0.0, 0.0, 0.05, 0.5, 1.0]),
            repeat_penalty: pick(&mut rng, &[1.0, 1.1, 0.7]),
            repeat_last_n: pick(&mut rng, &[0, 64, usize::MAX]),
            presence_penalty: pick(&mut rng, &[0.0, 0.3]),
            frequency_penalty: pick(&mut rng, &[0.0, -0.2]),
            seed: rng.next_u64(),
            logit_bias: vec![(3, 1.5), ((n / 2) as u32, f32::NEG_INFINITY)],
        };
        check(
            &params,
            &logits,
            &history,
            3,
            &format!("case {case}, n {n}"),
        );
    }
}

/// top_p set to the exact share of a best-first prefix puts the cut where the two totals'
/// last bits decide it, which the fast path must hand to the exact one.
#[test]
fn top_p_on_a_prefix_share_boundary() {
    let mut rng = Rng::from_seed(99);
    for case in 0..24 {
        let spread = pick(&mut rng, &[2.0, 3.5, 5.0]);
        let logits = row(&mut rng, 49_152, spread, false);
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let weight = |l: f32| f64::from((l - max).exp());
        let mass: f64 = logits.iter().map(|&l| weight(l)).sum();
        let mut sorted: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l))
            .collect();
        sorted.sort_by(best_first);
        let rank = 1 + (rng.next_u64() % 200) as usize;
        let share: f64 = sorted[..rank].iter().map(|&(_, l)| weight(l) / mass).sum();
        for top_p in [share as f32, f32::from_bits((share as f32).to_bits() + 1)] {
            if !(top_p > 0.0 && top_p < 1.0) {
                continue;
            }
            let params = SamplerParams {
                temperature: 0.8,
                top_k: 0,
                top_p,
                min_p: 0.0,
                seed: case,
                ..SamplerParams::default()
            };
            check(
                &params,
                &logits,
                &[],
                2,
                &format!("case {case}, rank {rank}"),
            );
        }
    }
}

/// Rows shaped like a small model's: most tokens 10 to 30 logits below the best, the cut
/// of top-p 0.95 somewhere in the first few hundred.
#[test]
fn model_shaped_rows_with_openai_settings() {
    let mut rng = Rng::from_seed(5);
    for case in 0..40 {
        let mut logits = row(&mut rng, 49_152, 3.5, case % 4 == 0);
        let lift = (rng.next_u64() % 12) as f32;
        for l in logits.iter_mut().take(400) {
            *l += lift;
        }
        let params = SamplerParams {
            temperature: pick(&mut rng, &[0.2, 0.7, 0.8, 1.0, 1.5]),
            top_k: 0,
            top_p: pick(&mut rng, &[0.8, 0.9, 0.95, 0.99]),
            min_p: 0.0,
            seed: case,
            ..SamplerParams::default()
        };
        check(&params, &logits, &[], 4, &format!("case {case}"));
    }
}

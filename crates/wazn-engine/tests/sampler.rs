//! Sampler tests: each filter of the chain on crafted distributions, the draw against the
//! softmax it should follow, and the random stream against the `rand_xoshiro` reference.

use std::collections::BTreeSet;

use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256StarStar;
use wazn_engine::sampler::{top_logprobs, Rng, Sampler, SamplerError, SamplerParams};

/// Settings that sample the plain softmax: every filter off, no penalties.
fn unfiltered(temperature: f32, seed: u64) -> SamplerParams {
    SamplerParams {
        temperature,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        seed,
        ..SamplerParams::default()
    }
}

fn sampler(params: SamplerParams) -> Sampler {
    match Sampler::new(params) {
        Ok(s) => s,
        Err(e) => panic!("valid test settings rejected: {e}"),
    }
}

/// Samples `n` times from fresh copies of `logits` (the sampler uses the row as scratch).
fn draws(s: &mut Sampler, logits: &[f32], history: &[u32], n: usize) -> Vec<u32> {
    let mut row = vec![0.0; logits.len()];
    (0..n)
        .map(|_| {
            row.copy_from_slice(logits);
            s.sample(&mut row, history)
        })
        .collect()
}

fn drawn_set(params: SamplerParams, logits: &[f32], n: usize) -> BTreeSet<u32> {
    draws(&mut sampler(params), logits, &[], n)
        .into_iter()
        .collect()
}

fn greedy_pick(params: SamplerParams, logits: &[f32], history: &[u32]) -> u32 {
    let mut row = logits.to_vec();
    sampler(SamplerParams {
        temperature: 0.0,
        ..params
    })
    .sample(&mut row, history)
}

/// softmax(logits / temperature) over `keep` (all tokens when None), in f64, written directly
/// from the definition.
fn softmax(logits: &[f32], temperature: f64, keep: Option<&[u32]>) -> Vec<f64> {
    let kept = |i: usize| keep.is_none_or(|k| k.contains(&(i as u32)));
    let e: Vec<f64> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            if kept(i) {
                (f64::from(l) / temperature).exp()
            } else {
                0.0
            }
        })
        .collect();
    let total: f64 = e.iter().sum();
    e.iter().map(|x| x / total).collect()
}

/// Checks the frequencies of `n` draws against `probs`: every token within 4 standard
/// deviations of its expected count, and Pearson's chi-square below the 0.999 quantile.
fn assert_matches_distribution(drawn: &[u32], probs: &[f64], chi2_999: f64) {
    let n = drawn.len() as f64;
    let mut counts = vec![0usize; probs.len()];
    for &t in drawn {
        counts[t as usize] += 1;
    }
    let mut chi2 = 0.0;
    for (t, (&c, &p)) in counts.iter().zip(probs).enumerate() {
        if p == 0.0 {
            assert_eq!(c, 0, "token {t} has probability 0 but was drawn {c} times");
            continue;
        }
        let expected = n * p;
        let sigma = (n * p * (1.0 - p)).sqrt();
        let off = (c as f64 - expected).abs();
        assert!(
            off < 4.0 * sigma,
            "token {t}: {c} draws, expected {expected:.1} ± {sigma:.1}"
        );
        chi2 += (c as f64 - expected).powi(2) / expected;
    }
    assert!(chi2 < chi2_999, "chi-square {chi2:.2} ≥ {chi2_999}");
}

#[test]
fn rng_matches_reference_xoshiro256starstar() {
    for seed in [0, 1, 42, 0xDEAD_BEEF_CAFE_F00D, u64::MAX] {
        let mut ours = Rng::from_seed(seed);
        let mut reference = Xoshiro256StarStar::seed_from_u64(seed);
        for i in 0..1000 {
            assert_eq!(
                ours.next_u64(),
                reference.next_u64(),
                "seed {seed}, draw {i}"
            );
        }
    }
}

#[test]
fn rng_f64_uses_the_top_53_bits() {
    let mut a = Rng::from_seed(7);
    let mut b = a.clone();
    for _ in 0..1000 {
        let x = a.next_f64();
        let bits = b.next_u64() >> 11;
        assert!((0.0..1.0).contains(&x));
        assert_eq!(x, bits as f64 / 2f64.powi(53));
    }
}

#[test]
fn defaults_are_llama_cli_defaults() {
    let p = SamplerParams::default();
    assert_eq!(p.temperature, 0.8);
    assert_eq!(p.top_k, 40);
    assert_eq!(p.top_p, 0.95);
    assert_eq!(p.min_p, 0.05);
    assert_eq!(p.repeat_penalty, 1.0);
    assert_eq!(p.repeat_last_n, 64);
    assert_eq!(p.presence_penalty, 0.0);
    assert_eq!(p.frequency_penalty, 0.0);
    assert!(p.logit_bias.is_empty());
    assert!(p.validate().is_ok());
    assert_eq!(SamplerParams::greedy().temperature, 0.0);
}

#[test]
fn params_serde_fills_missing_fields_with_defaults() {
    let p: SamplerParams = match serde_json::from_str(r#"{"temperature": 0.5, "seed": 9}"#) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    let expected = SamplerParams {
        temperature: 0.5,
        seed: 9,
        ..SamplerParams::default()
    };
    assert_eq!(p, expected);
    let json = serde_json::to_string(&expected).unwrap_or_default();
    let back: Result<SamplerParams, _> = serde_json::from_str(&json);
    assert_eq!(back.ok(), Some(expected));
}

#[test]
fn validate_rejects_bad_settings() {
    let with = |f: fn(&mut SamplerParams)| {
        let mut p = SamplerParams::default();
        f(&mut p);
        p
    };
    let cases: Vec<(SamplerParams, SamplerError)> = vec![
        (
            with(|p| p.temperature = f32::NAN),
            SamplerError::NotFinite {
                name: "temperature",
                value: f32::NAN,
            },
        ),
        (with(|p| p.top_p = 0.0), SamplerError::TopP(0.0)),
        (with(|p| p.top_p = 1.5), SamplerError::TopP(1.5)),
        (with(|p| p.min_p = -0.1), SamplerError::MinP(-0.1)),
        (with(|p| p.min_p = 1.1), SamplerError::MinP(1.1)),
        (
            with(|p| p.repeat_penalty = 0.0),
            SamplerError::RepeatPenalty(0.0),
        ),
        (
            with(|p| p.repeat_penalty = -1.0),
            SamplerError::RepeatPenalty(-1.0),
        ),
        (
            with(|p| p.presence_penalty = f32::INFINITY),
            SamplerError::NotFinite {
                name: "presence_penalty",
                value: f32::INFINITY,
            },
        ),
        (
            with(|p| p.logit_bias = vec![(3, 1.0), (5, f32::NAN)]),
            SamplerError::BiasNaN { token: 5 },
        ),
    ];
    for (params, expected) in cases {
        let got = params.validate();
        // NaN != NaN, so compare the messages.
        assert_eq!(
            got.as_ref().map_err(|e| e.to_string()),
            Err(expected.to_string()),
            "{params:?}"
        );
        assert!(Sampler::new(params).is_err());
    }
    // A negative temperature means greedy, and an infinite bias bans or forces a token.
    let ok = with(|p| {
        p.temperature = -1.0;
        p.logit_bias = vec![(0, f32::NEG_INFINITY), (1, f32::INFINITY)];
    });
    assert!(ok.validate().is_ok());
    assert_eq!(
        ok.check_vocab(1),
        Err(SamplerError::BiasTokenOutOfRange {
            token: 1,
            n_vocab: 1
        })
    );
    assert!(ok.check_vocab(2).is_ok());
}

#[test]
fn greedy_is_argmax_with_lowest_id_on_ties() {
    assert_eq!(
        greedy_pick(SamplerParams::greedy(), &[1.0, 3.0, 3.0, 2.0], &[]),
        1
    );
    assert_eq!(
        greedy_pick(SamplerParams::greedy(), &[-0.0, 0.0, -1.0], &[]),
        0
    );
    // Random rows with many ties (integer logits in a small range), negative temperature too.
    let mut rng = Rng::from_seed(3);
    for row in 0..200 {
        let logits: Vec<f32> = (0..50).map(|_| (rng.next_u64() % 7) as f32 - 3.0).collect();
        let best = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let expected = logits.iter().position(|&l| l == best).unwrap_or(usize::MAX) as u32;
        let params = SamplerParams {
            temperature: if row % 2 == 0 { 0.0 } else { -0.5 },
            ..SamplerParams::default()
        };
        assert_eq!(greedy_pick(params, &logits, &[]), expected, "row {row}");
    }
}

#[test]
fn top_k_one_equals_greedy() {
    let mut rng = Rng::from_seed(4);
    for row in 0..200 {
        let logits: Vec<f32> = (0..64).map(|_| (rng.next_u64() % 9) as f32 * 0.5).collect();
        let greedy = greedy_pick(SamplerParams::greedy(), &logits, &[]);
        let params = SamplerParams {
            temperature: 1.5,
            top_k: 1,
            top_p: 1.0,
            min_p: 0.0,
            seed: row,
            ..SamplerParams::default()
        };
        assert_eq!(
            drawn_set(params, &logits, 20),
            BTreeSet::from([greedy]),
            "row {row}"
        );
    }
}

#[test]
fn same_seed_same_draws_other_seed_other_draws() {
    let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
    let run = |seed| draws(&mut sampler(unfiltered(1.0, seed)), &logits, &[], 200);
    assert_eq!(run(11), run(11));
    assert_ne!(run(11), run(12));
    // A clone continues the same stream.
    let mut a = sampler(unfiltered(1.0, 5));
    draws(&mut a, &logits, &[], 3);
    let mut b = a.clone();
    assert_eq!(
        draws(&mut a, &logits, &[], 50),
        draws(&mut b, &logits, &[], 50)
    );
}

#[test]
fn draws_follow_softmax_at_temperature_one() {
    let logits = [1.0f32, 2.0, 0.5, -1.0, 3.0, 0.0, 2.5, -0.5];
    let drawn = draws(&mut sampler(unfiltered(1.0, 2024)), &logits, &[], 20_000);
    // chi-square 0.999 quantile with 7 degrees of freedom.
    assert_matches_distribution(&drawn, &softmax(&logits, 1.0, None), 24.32);
}

#[test]
fn draws_follow_softmax_at_other_temperatures() {
    let logits = [1.0f32, 2.0, 0.5, -1.0, 3.0, 0.0, 2.5, -0.5];
    for (temperature, seed) in [(0.5, 1), (2.0, 2)] {
        let drawn = draws(
            &mut sampler(unfiltered(temperature, seed)),
            &logits,
            &[],
            20_000,
        );
        let probs = softmax(&logits, f64::from(temperature), None);
        assert_matches_distribution(&drawn, &probs, 24.32);
    }
}

#[test]
fn filtered_draws_follow_the_renormalized_softmax() {
    // top-k 3 keeps tokens 4, 6, 1; temperature then reshapes only those.
    let logits = [1.0f32, 2.0, 0.5, -1.0, 3.0, 0.0, 2.5, -0.5];
    let params = SamplerParams {
        temperature: 0.7,
        top_k: 3,
        top_p: 1.0,
        min_p: 0.0,
        seed: 77,
        ..SamplerParams::default()
    };
    let drawn = draws(&mut sampler(params), &logits, &[], 20_000);
    let probs = softmax(&logits, 0.7, Some(&[4, 6, 1]));
    // 2 degrees of freedom.
    assert_matches_distribution(&drawn, &probs, 13.82);
}

/// Logits whose softmax is `probs`, placed at scrambled ids so that order in the row and
/// order by probability differ.
fn scrambled(probs: &[f64], ids: &[u32], n_vocab: usize) -> Vec<f32> {
    let mut logits = vec![f32::NEG_INFINITY; n_vocab];
    for (&p, &id) in probs.iter().zip(ids) {
        logits[id as usize] = p.ln() as f32;
    }
    logits
}

#[test]
fn top_p_keeps_the_smallest_prefix_reaching_p() {
    let probs = [0.5, 0.3, 0.15, 0.05];
    let ids = [6u32, 2, 9, 0];
    let logits = scrambled(&probs, &ids, 12);
    let with = |top_k, top_p| SamplerParams {
        temperature: 1.0,
        top_k,
        top_p,
        min_p: 0.0,
        seed: 8,
        ..SamplerParams::default()
    };
    let set = |ranks: &[usize]| ranks.iter().map(|&r| ids[r]).collect::<BTreeSet<u32>>();
    assert_eq!(drawn_set(with(0, 0.45), &logits, 2000), set(&[0]));
    assert_eq!(drawn_set(with(0, 0.75), &logits, 2000), set(&[0, 1]));
    assert_eq!(drawn_set(with(0, 0.83), &logits, 2000), set(&[0, 1, 2]));
    assert_eq!(drawn_set(with(0, 0.97), &logits, 4000), set(&[0, 1, 2, 3]));
    // After top-k 3 the mass is renormalized over the three (0.526, 0.316, 0.158), as
    // llama.cpp does, so 0.83 is reached by the first two.
    assert_eq!(drawn_set(with(3, 0.83), &logits, 2000), set(&[0, 1]));
    // top-k larger than the vocabulary is no cut at all.
    assert_eq!(drawn_set(with(100, 0.83), &logits, 2000), set(&[0, 1, 2]));
}

#[test]
fn top_p_prefix_longer_than_one_sorted_chunk() {
    // 600 nearly flat tokens at random ids: the prefix reaching 0.6 holds over 300 of them,
    // so it ends in the third chunk that is selected and sorted on its own (64, 128, 256).
    let n = 600;
    let mut rng = Rng::from_seed(30);
    let logits: Vec<f32> = (0..n).map(|_| (rng.next_f64() * 0.5) as f32).collect();
    let probs = softmax(&logits, 1.0, None);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let top_p = 0.6;
    let mut cumulative = 0.0;
    let mut len = 0;
    while cumulative < top_p {
        cumulative += probs[order[len]];
        len += 1;
    }
    // The crossing is well clear of rounding.
    assert!(cumulative - top_p > 1e-5 && top_p - (cumulative - probs[order[len - 1]]) > 1e-5);
    assert!(len > 192, "prefix of {len} tokens spans too few chunks");
    let expected: BTreeSet<u32> = order[..len].iter().map(|&i| i as u32).collect();
    for top_k in [0, n] {
        let params = SamplerParams {
            temperature: 1.0,
            top_k,
            top_p: top_p as f32,
            min_p: 0.0,
            seed: 31,
            ..SamplerParams::default()
        };
        assert_eq!(
            drawn_set(params, &logits, 15_000),
            expected,
            "top_k {top_k}"
        );
    }
}

#[test]
fn top_k_ties_at_the_cut_keep_the_lower_ids() {
    let logits = [1.0f32, 2.0, 0.0, 2.0, 2.0, 3.0, 2.0];
    let params = SamplerParams {
        temperature: 1.0,
        top_k: 3,
        top_p: 1.0,
        min_p: 0.0,
        seed: 6,
        ..SamplerParams::default()
    };
    assert_eq!(drawn_set(params, &logits, 2000), BTreeSet::from([1, 3, 5]));
}

#[test]
fn min_p_drops_tokens_below_min_p_times_the_best() {
    let probs = [0.4, 0.3, 0.2, 0.06, 0.04];
    let ids = [3u32, 7, 1, 0, 5];
    let logits = scrambled(&probs, &ids, 8);
    let set = |ranks: &[usize]| ranks.iter().map(|&r| ids[r]).collect::<BTreeSet<u32>>();
    // Both paths: without top-k (min-p applied before sorting) and with an active top-k.
    for top_k in [0, 5, 7] {
        let with = |min_p| SamplerParams {
            temperature: 1.0,
            top_k,
            top_p: 1.0,
            min_p,
            seed: 9,
            ..SamplerParams::default()
        };
        // Threshold 0.125 * 0.4 = 0.05 drops only the 0.04.
        assert_eq!(
            drawn_set(with(0.125), &logits, 4000),
            set(&[0, 1, 2, 3]),
            "k {top_k}"
        );
        // Threshold 0.6 * 0.4 = 0.24 keeps 0.4 and 0.3.
        assert_eq!(
            drawn_set(with(0.6), &logits, 2000),
            set(&[0, 1]),
            "k {top_k}"
        );
        assert_eq!(drawn_set(with(1.0), &logits, 200), set(&[0]), "k {top_k}");
    }
    // min-p after top-p: top-p 0.75 keeps ranks 0, 1; min-p 0.6 keeps them too.
    let both = SamplerParams {
        temperature: 1.0,
        top_k: 0,
        top_p: 0.75,
        min_p: 0.6,
        seed: 10,
        ..SamplerParams::default()
    };
    assert_eq!(drawn_set(both, &logits, 2000), set(&[0, 1]));
}

#[test]
fn default_chain_on_a_large_vocabulary_draws_only_from_the_top_k() {
    let n_vocab = 200_000;
    let mut rng = Rng::from_seed(12);
    let logits: Vec<f32> = (0..n_vocab).map(|_| rng.next_f64() as f32 * 4.0).collect();
    let mut order: Vec<u32> = (0..n_vocab as u32).collect();
    order.sort_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    let top: BTreeSet<u32> = order[..40].iter().copied().collect();
    let params = SamplerParams {
        seed: 1,
        ..SamplerParams::default()
    };
    let drawn = drawn_set(params, &logits, 300);
    assert!(drawn.is_subset(&top), "drew outside the 40 best: {drawn:?}");
    assert!(
        drawn.len() > 5,
        "the 40 best are nearly equal, yet only {drawn:?} was drawn"
    );
}

#[test]
fn repeat_penalty_divides_positive_and_multiplies_negative_logits() {
    let params = |repeat_penalty, repeat_last_n| SamplerParams {
        repeat_penalty,
        repeat_last_n,
        ..SamplerParams::greedy()
    };
    // Positive: 2.0 / 1.5 = 1.33 < 1.5, but 2.0 / 1.3 = 1.54 > 1.5.
    let logits = [2.0f32, 1.5, -3.0];
    assert_eq!(greedy_pick(params(1.5, 64), &logits, &[0]), 1);
    assert_eq!(greedy_pick(params(1.3, 64), &logits, &[0]), 0);
    // Negative: -1.0 * 1.5 = -1.5 < -1.4 (dividing would have raised it to -0.67).
    let logits = [-1.0f32, -1.4];
    assert_eq!(greedy_pick(params(1.5, 64), &logits, &[0]), 1);
    assert_eq!(greedy_pick(params(1.3, 64), &logits, &[0]), 0);
    // Applied once per distinct token, whatever its count.
    let logits = [2.0f32, 1.5];
    assert_eq!(greedy_pick(params(1.3, 64), &logits, &[0, 0, 0, 0]), 0);
    // Only the last n tokens count; 0 turns penalties off; usize::MAX is the whole history.
    let logits = [2.0f32, 1.5, -5.0];
    assert_eq!(greedy_pick(params(1.5, 2), &logits, &[0, 2, 2]), 0);
    assert_eq!(greedy_pick(params(1.5, 3), &logits, &[0, 2, 2]), 1);
    assert_eq!(greedy_pick(params(1.5, 0), &logits, &[0]), 0);
    assert_eq!(
        greedy_pick(params(1.5, usize::MAX), &logits, &[0, 2, 2, 2]),
        1
    );
    // A penalty below 1 rewards repeats.
    assert_eq!(greedy_pick(params(0.5, 64), &[1.0, 2.5], &[0]), 1);
    assert_eq!(greedy_pick(params(0.5, 64), &[1.5, 2.5], &[0]), 0);
    // Ids beyond the vocabulary in the history are ignored.
    assert_eq!(greedy_pick(params(1.5, 64), &logits, &[0, 99, u32::MAX]), 1);
}

#[test]
fn presence_and_frequency_penalties_subtract_as_defined() {
    let params = |presence_penalty, frequency_penalty| SamplerParams {
        presence_penalty,
        frequency_penalty,
        ..SamplerParams::greedy()
    };
    let logits = [3.0f32, 2.5, 0.0];
    let history = [0, 0, 0, 2];
    // Frequency: 3 - 3 * 0.2 = 2.4 < 2.5; 3 - 3 * 0.15 = 2.55 > 2.5.
    assert_eq!(greedy_pick(params(0.0, 0.2), &logits, &history), 1);
    assert_eq!(greedy_pick(params(0.0, 0.15), &logits, &history), 0);
    // Presence, once whatever the count: 3 - 0.4 = 2.6 > 2.5; 3 - 0.6 = 2.4 < 2.5.
    assert_eq!(greedy_pick(params(0.4, 0.0), &logits, &history), 0);
    assert_eq!(greedy_pick(params(0.6, 0.0), &logits, &history), 1);
    // Both: 3 - 0.3 - 3 * 0.05 = 2.55 > 2.5; 3 - 0.3 - 3 * 0.07 = 2.49 < 2.5.
    assert_eq!(greedy_pick(params(0.3, 0.05), &logits, &history), 0);
    assert_eq!(greedy_pick(params(0.3, 0.07), &logits, &history), 1);
    // Negative values reward: 2.5 + 0.6 = 3.1 > 3.
    assert_eq!(greedy_pick(params(-0.6, 0.0), &logits, &[1]), 1);
    // Outside the window nothing is subtracted.
    let windowed = SamplerParams {
        repeat_last_n: 1,
        ..params(0.6, 0.0)
    };
    assert_eq!(greedy_pick(windowed, &logits, &history), 0);
}

#[test]
fn repeat_penalty_comes_before_the_subtractions() {
    // 3.0 / 1.5 - 2 * 0.1 = 1.8 < 1.83; the other order would give (3.0 - 0.2) / 1.5 = 1.87.
    let params = SamplerParams {
        repeat_penalty: 1.5,
        frequency_penalty: 0.1,
        ..SamplerParams::greedy()
    };
    assert_eq!(greedy_pick(params.clone(), &[3.0, 1.83], &[0, 0]), 1);
    assert_eq!(greedy_pick(params, &[3.0, 1.79], &[0, 0]), 0);
}

#[test]
fn logit_bias_is_added_before_everything() {
    let logits = [1.0f32, 2.0, 3.0];
    let biased = |logit_bias| SamplerParams {
        logit_bias,
        ..SamplerParams::greedy()
    };
    assert_eq!(greedy_pick(biased(vec![(0, 2.5)]), &logits, &[]), 0);
    assert_eq!(greedy_pick(biased(vec![(0, 1.5)]), &logits, &[]), 2);
    // Listed twice, the biases add up.
    assert_eq!(
        greedy_pick(biased(vec![(0, 1.5), (0, 1.0)]), &logits, &[]),
        0
    );
    assert_eq!(
        greedy_pick(biased(vec![(2, f32::NEG_INFINITY)]), &logits, &[]),
        1
    );
    // Ids beyond the row are ignored.
    assert_eq!(greedy_pick(biased(vec![(7, 100.0)]), &logits, &[]), 2);
    // Bias, then the repeat penalty: (1 + 5) / 2 = 3.0 loses to 3.05 and beats 2.95;
    // the other way round, 1 / 2 + 5 = 5.5 would beat both.
    let both = SamplerParams {
        repeat_penalty: 2.0,
        ..biased(vec![(0, 5.0)])
    };
    assert_eq!(greedy_pick(both.clone(), &[1.0, 2.0, 3.05], &[0]), 2);
    assert_eq!(greedy_pick(both, &[1.0, 2.0, 2.95], &[0]), 0);
    // A banned token is never drawn.
    let banned = SamplerParams {
        logit_bias: vec![(4, f32::NEG_INFINITY)],
        ..unfiltered(1.0, 3)
    };
    let drawn = drawn_set(banned, &[0.0; 6], 2000);
    assert_eq!(drawn, BTreeSet::from([0, 1, 2, 3, 5]));
}

#[test]
fn nan_logits_count_as_minus_infinity() {
    let logits = [f32::NAN, 1.0, f32::NAN, 0.5];
    assert_eq!(greedy_pick(SamplerParams::greedy(), &logits, &[]), 1);
    for params in [unfiltered(1.0, 1), SamplerParams::default()] {
        assert_eq!(drawn_set(params, &logits, 2000), BTreeSet::from([1, 3]));
    }
    // Nothing drawable: all tokens tie, greedy gives the lowest id, sampling any of them.
    let nothing = [f32::NAN, f32::NEG_INFINITY, f32::NAN];
    assert_eq!(greedy_pick(SamplerParams::greedy(), &nothing, &[]), 0);
    assert_eq!(
        drawn_set(unfiltered(1.0, 1), &nothing, 500),
        BTreeSet::from([0, 1, 2])
    );
    // +inf forces a token; several +inf share the draws.
    let forced = [0.0, f32::INFINITY, 5.0, f32::INFINITY, f32::NAN];
    assert_eq!(greedy_pick(SamplerParams::greedy(), &forced, &[]), 1);
    assert_eq!(
        drawn_set(SamplerParams::default(), &forced, 500),
        BTreeSet::from([1, 3])
    );
    // An empty row does not panic.
    let mut empty: [f32; 0] = [];
    assert_eq!(
        sampler(SamplerParams::default()).sample(&mut empty, &[1, 2]),
        0
    );
    let top = top_logprobs(&logits, 4);
    assert_eq!(top[0].0, 1);
    assert_eq!(top[2..], [(0, f32::NEG_INFINITY), (2, f32::NEG_INFINITY)]);
}

/// log-softmax in f64 straight from the definition.
fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let total: f64 = logits.iter().map(|&l| (f64::from(l) - max).exp()).sum();
    logits
        .iter()
        .map(|&l| f64::from(l) - max - total.ln())
        .collect()
}

#[test]
fn top_logprobs_are_the_best_k_of_the_log_softmax() {
    let mut rng = Rng::from_seed(21);
    let logits: Vec<f32> = (0..1000)
        .map(|_| (rng.next_f64() * 40.0 - 20.0) as f32)
        .collect();
    let reference = log_softmax(&logits);
    let all = top_logprobs(&logits, logits.len());
    assert_eq!(all.len(), logits.len());
    let mass: f64 = all.iter().map(|&(_, lp)| f64::from(lp).exp()).sum();
    assert!(
        (mass - 1.0).abs() < 1e-5,
        "exp of all logprobs sums to {mass}"
    );
    for &(id, lp) in &all {
        let r = reference[id as usize];
        assert!(
            (f64::from(lp) - r).abs() < 1e-5 * r.abs().max(1.0),
            "{id}: {lp} vs {r}"
        );
    }
    for pair in all.windows(2) {
        assert!(pair[0].1 >= pair[1].1, "not best first: {pair:?}");
    }
    let top5 = top_logprobs(&logits, 5);
    assert_eq!(top5, all[..5]);
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    ids.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    assert_eq!(top5.iter().map(|&(id, _)| id).collect::<Vec<_>>(), ids[..5]);
    // Ties: lower id first. k beyond the vocabulary is clamped, k = 0 gives nothing.
    let tied = top_logprobs(&[0.0, 2.0, 1.0, 2.0, 2.0], 10);
    let order: Vec<u32> = tied.iter().map(|&(id, _)| id).collect();
    assert_eq!(order, [1, 3, 4, 2, 0]);
    assert!(top_logprobs(&logits, 0).is_empty());
    assert!(top_logprobs(&[], 3).is_empty());
}

#!/usr/bin/env python3
"""Writes tests/data/statistics_reference.json: perplexity and KL-divergence statistics
computed with numpy from fixed logit arrays, as llama-perplexity defines them
(tools/perplexity/perplexity.cpp in llama.cpp): the 16-bit base rows, PPL with its
standard error, and against the base: KLD mean, standard error and percentiles, Δp,
same-top-token rate, the PPL ratio and difference with their correlated uncertainties.

The logits come from a 32-bit LCG that the Rust test reproduces exactly, so only the
expected numbers are stored. Run from the repository root with any Python that has numpy:

    python crates/wazn-eval/tests/gen_statistics_reference.py
"""

import hashlib
import json
from pathlib import Path

import numpy as np

N_VOCAB = 50
N_TOKENS = 300
OUT = Path(__file__).resolve().parent / "data" / "statistics_reference.json"
f32 = np.float32


def lcg(seed: int):
    state = seed
    while True:
        state = (state * 1664525 + 1013904223) % (1 << 32)
        yield f32(state >> 8) / f32(16777216.0)


def logits_arrays():
    """Base logits, the compared model's logits, and the right token of each row."""
    base_stream, noise_stream, token_stream = lcg(1), lcg(2), lcg(3)
    base = np.zeros((N_TOKENS, N_VOCAB), dtype=f32)
    other = np.zeros((N_TOKENS, N_VOCAB), dtype=f32)
    tokens = np.zeros(N_TOKENS, dtype=np.int64)
    for t in range(N_TOKENS):
        # Every fifth row is sharply peaked, so that some base log-probabilities fall
        # below -16 (stored as the minimum and left out of the KLD sum).
        sharp = f32(8.0) if t % 5 == 0 else f32(1.0)
        for i in range(N_VOCAB):
            b = (next(base_stream) * f32(6.0) - f32(3.0)) * sharp
            base[t, i] = b
            other[t, i] = b + (next(noise_stream) * f32(2.0) - f32(1.0))
        tokens[t] = int(next(token_stream) * f32(N_VOCAB)) % N_VOCAB
    return base, other, tokens


def nearest_int(x):
    # Round half to even, as ggml's float trick does.
    return np.rint(x).astype(np.int64)


def quantize_row(logits):
    """llama-perplexity's log_softmax(…, uint16_t *log_prob, …)."""
    max_logit, min_logit = logits.max(), logits.min()
    min_logit = max(min_logit, f32(max_logit - f32(16.0)))
    sum_exp = float(np.sum(np.exp(logits - max_logit).astype(np.float64)))
    log_sum_exp = f32(np.log(sum_exp))
    min_log_prob = f32(f32(min_logit - max_logit) - log_sum_exp)
    scale = f32(f32(max_logit - min_logit) / f32(65535.0))
    if scale != 0:
        inv_scale = f32(f32(1.0) / scale)
        q = np.where(logits > min_logit, nearest_int(inv_scale * (logits - min_logit).astype(f32)), 0)
    else:
        q = np.zeros(len(logits), dtype=np.int64)
    return scale, min_log_prob, q.astype(np.uint16)


def mean_and_uncertainty(values):
    n = len(values)
    mean = float(np.mean(values))
    var = float(np.mean(np.square(values))) - mean * mean
    se = (var / (n - 1)) ** 0.5 if var > 0 and n > 10 else 0.0
    return mean, se


def percentile(sorted_values, fraction):
    p = f32(fraction) * f32(len(sorted_values) - 1)
    ip = int(p)
    frac = f32(p - f32(ip))
    return float(f32(f32(1) - frac) * sorted_values[ip] + frac * sorted_values[min(ip + 1, len(sorted_values) - 1)])


def main():
    base, other, tokens = logits_arrays()
    rows = [quantize_row(row) for row in base]
    digest = hashlib.sha256()
    for _, _, q in rows:
        digest.update(q.astype("<u2").tobytes())

    # Perplexity of the base alone (double-precision log-softmax).
    nll_plain = []
    for row, tok in zip(base, tokens):
        m = row.max()
        nll_plain.append(-(float(row[tok] - m) - np.log(np.sum(np.exp(row - m).astype(np.float64)))))
    nll_plain = np.array(nll_plain)
    mean = nll_plain.mean()
    ppl = float(np.exp(mean))
    ppl_se = float(np.sqrt((np.mean(nll_plain ** 2) - mean ** 2) / (len(nll_plain) - 1)) * ppl)

    # The compared model against the stored base rows.
    nll, nll_base, kld, p_diff, same_top = [], [], [], [], []
    for row, (scale, min_log_prob, q), tok in zip(other, rows, tokens):
        m = row.max()
        lse = f32(np.log(np.sum(np.exp(row - m).astype(np.float64))))
        n = f32(f32(m + lse) - row[tok])
        log_p_base = (scale * q.astype(f32) + min_log_prob).astype(f32)
        nb = -log_p_base[tok]
        keep = log_p_base > f32(-16.0)
        terms = (np.exp(log_p_base) * ((log_p_base - row) + f32(m + lse))).astype(f32)
        kld.append(float(np.sum(terms[keep].astype(np.float64))))
        nll.append(float(n))
        nll_base.append(float(nb))
        p_diff.append(float(f32(np.exp(-n)) - f32(np.exp(-nb))))
        same_top.append(int(np.argmax(row)) == int(np.argmax(log_p_base)))
    nll, nll_base, kld, p_diff = map(np.array, (nll, nll_base, kld, p_diff))
    count = len(nll)
    lp, lp_se = mean_and_uncertainty(nll)
    lb, lb_se = mean_and_uncertainty(nll_base)
    cov = (np.mean(nll * nll_base) - lp * lb) / (count - 1)
    ratio_se = (lp_se ** 2 + lb_se ** 2 - 2 * cov) ** 0.5
    ppl_q, ppl_b = np.exp(lp), np.exp(lb)
    kld_mean, kld_se = mean_and_uncertainty(kld)
    kld_sorted = np.sort(kld.astype(f32))
    dp_mean, dp_se = mean_and_uncertainty(p_diff)
    mse, mse_se = mean_and_uncertainty(p_diff ** 2)
    same = float(np.mean(same_top))
    n_half = len(kld_sorted) // 2
    out = {
        "n_vocab": N_VOCAB,
        "n_tokens": N_TOKENS,
        "base_rows_sha256": digest.hexdigest(),
        "base_scales": [float(s) for s, _, _ in rows[:10]],
        "base_min_log_probs": [float(m) for _, m, _ in rows[:10]],
        "ppl": ppl,
        "ppl_se": ppl_se,
        "comparison": {
            "ppl": [float(ppl_q), float(ppl_q * lp_se)],
            "ppl_base": [float(ppl_b), float(ppl_b * lb_se)],
            "ln_ppl_ratio": [float(lp - lb), float(ratio_se)],
            "delta_ppl": [float(ppl_q - ppl_b),
                          float((( ppl_q * lp_se) ** 2 + (ppl_b * lb_se) ** 2 - 2 * ppl_q * ppl_b * cov) ** 0.5)],
            "kld": [kld_mean, kld_se],
            "kld_max": float(kld_sorted[-1]),
            "kld_p99": percentile(kld_sorted, 0.99),
            "kld_p90": percentile(kld_sorted, 0.90),
            "kld_median": float(f32(0.5) * (kld_sorted[n_half] + kld_sorted[n_half - 1])),
            "kld_p10": percentile(kld_sorted, 0.10),
            "kld_min": float(kld_sorted[0]),
            "delta_p": [dp_mean, dp_se],
            "delta_p_rms": [float(mse ** 0.5), float(0.5 / mse ** 0.5 * mse_se)],
            "same_top_p": [same, float((same * (1 - same) / (count - 1)) ** 0.5)],
        },
    }
    OUT.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

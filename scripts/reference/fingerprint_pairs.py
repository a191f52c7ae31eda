#!/usr/bin/env python3
"""Model pairs for `wazn fingerprint` and AWM's statistics on them, computed independently.

AWM (arXiv 2510.06738): the embedding rows of the shared tokens align the hidden dimensions
(scipy's linear_sum_assignment on 1 - |cos|, the sign of the paired cosine undoing flips);
then per layer the unbiased CKA (Song et al. 2012's HSIC_1) of Wq, Wk and WqWk^T, with the
hidden dimensions as samples. Everything here is float64 numpy on dense Gram matrices (wazn
computes the same numbers from factors in float32); the GQA product repeats the key heads, as
transformers' repeat_kv does. As in wazn, the attention norm's gains are folded into Wq and Wk,
GGUF's RoPE row permutation is undone, and rows are matched over a bottom-4096 sketch of the
token-string hashes (FNV-1a 64 + splitmix64's finalizer).

Two modes:
  tiny     Writes tiny random Llama folders (hidden 64, 4 layers, 512 tokens, bfloat16) and
           reference.json into crates/wazn-fingerprint/tests/data/fingerprint/ (committed):
           a base, copies of it (hidden dimensions permuted and signs flipped; that plus
           heads permuted; two layers dropped; 5% noise on every weight, a stand-in for
           training; norm gains absorbed into the matrices with Wq and Wk rescaled; 64 tokens
           added to the vocabulary), and two independent inits. A few seconds.
  default  Builds pairs from the default model into ~/.cache/wazn/fingerprint-pairs/ (not
           committed; ~3 GB): requantized copies (Q8_0, Q4_K_M, by `wazn quantize`), the same
           weights as a Hugging Face folder, a copy with hidden dimensions and heads permuted
           and signs flipped (checked to give the same logits), a copy fine-tuned with
           transformers (--steps, default 200), one with 5 layers dropped, and two independent
           random inits of the same shape; then reference.json there. About 10 minutes on 2 cores.

Run (repository root; nothing is downloaded):
  HF_HUB_OFFLINE=1 /work/ref/venv/bin/python scripts/reference/fingerprint_pairs.py tiny
  HF_HUB_OFFLINE=1 /work/ref/venv/bin/python scripts/reference/fingerprint_pairs.py default \
      --wazn target/release/wazn
Needs scripts/reference/requirements.txt and requirements-fingerprint.txt (scipy).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

MASK = (1 << 64) - 1
SKETCH_TOKENS = 4096
MIN_SHARED_TOKENS = 64


# ---------------------------------------------------------------- hashing and sketches
def mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def token_hash(token: str) -> int:
    h = 0xCBF29CE484222325
    for byte in token.encode("utf-8"):
        h ^= byte
        h = (h * 0x100000001B3) & MASK
    return mix(h)


def sketch(tokens: list[str | None], n_rows: int) -> list[tuple[int, int]]:
    pairs = sorted((token_hash(t), i) for i, t in enumerate(tokens[:n_rows]) if t is not None)
    out, last = [], None
    for h, i in pairs:
        if h != last:
            out.append((h, i))
            last = h
    return out[:SKETCH_TOKENS]


# ---------------------------------------------------------------- reading models
class Model:
    """Embedding, token strings, shapes and per-layer (norm-folded, HF row order) Wq, Wk."""

    def __init__(self, path: Path):
        self.path = path
        if path.is_dir():
            self._read_hf(path)
        else:
            self._read_gguf(path)

    def _read_hf(self, path: Path):
        from safetensors.numpy import load_file
        import torch
        from safetensors.torch import load_file as load_torch

        cfg = json.loads((path / "config.json").read_text())
        t = load_torch(str(path / "model.safetensors"))
        self.tensors = {k: v.to(torch.float64).numpy() for k, v in t.items()}
        self.n_layer = cfg["num_hidden_layers"]
        self.n_head = cfg["num_attention_heads"]
        self.n_kv = cfg.get("num_key_value_heads", self.n_head)
        self.n_embd = cfg["hidden_size"]
        self.head_dim = cfg.get("head_dim") or self.n_embd // self.n_head
        tok = json.loads((path / "tokenizer.json").read_text())
        vocab = tok["model"]["vocab"]
        by_id = {}
        if isinstance(vocab, dict):
            by_id.update({i: s for s, i in vocab.items()})
        else:
            by_id.update({i: e[0] for i, e in enumerate(vocab)})
        for e in tok.get("added_tokens", []):
            by_id[e["id"]] = e["content"]
        n = max(by_id) + 1 if by_id else 0
        self.tokens = [by_id.get(i) for i in range(n)]
        self.embedding = self.tensors["model.embed_tokens.weight"]
        self.names = lambda i: (
            f"model.layers.{i}.self_attn.q_proj.weight",
            f"model.layers.{i}.self_attn.k_proj.weight",
            f"model.layers.{i}.input_layernorm.weight",
            f"model.layers.{i}.self_attn.v_proj.weight",
            f"model.layers.{i}.self_attn.o_proj.weight",
        )
        self.permuted_rows = False

    def _read_gguf(self, path: Path):
        import gguf

        r = gguf.GGUFReader(str(path))
        arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
        def field(key):
            f = r.fields[key]
            return int(f.parts[f.data[0]][0])
        self.n_layer = field(f"{arch}.block_count")
        self.n_head = field(f"{arch}.attention.head_count")
        self.n_kv = field(f"{arch}.attention.head_count_kv")
        self.n_embd = field(f"{arch}.embedding_length")
        self.head_dim = self.n_embd // self.n_head
        f = r.fields["tokenizer.ggml.tokens"]
        self.tokens = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        self.tensors = {}
        for t in r.tensors:
            values = gguf.quants.dequantize(t.data, t.tensor_type)
            shape = [int(d) for d in reversed(t.shape)]
            self.tensors[t.name] = np.asarray(values, dtype=np.float64).reshape(shape)
        self.embedding = self.tensors["token_embd.weight"]
        self.names = lambda i: (
            f"blk.{i}.attn_q.weight",
            f"blk.{i}.attn_k.weight",
            f"blk.{i}.attn_norm.weight",
            f"blk.{i}.attn_v.weight",
            f"blk.{i}.attn_output.weight",
        )
        self.permuted_rows = arch == "llama"

    def layer(self, i: int):
        q_name, k_name, norm_name = self.names(i)[:3]
        wq, wk = self.tensors[q_name], self.tensors[k_name]
        if self.permuted_rows:
            wq, wk = unpermute(wq, self.n_head), unpermute(wk, self.n_kv)
        g = self.tensors[norm_name].reshape(-1)
        return wq * g[None, :], wk * g[None, :]

    def value_output(self, i: int):
        """Wv (norm gains folded) and Wo: [n_kv * d, hidden] and [hidden, n_head * d]."""
        _, _, norm_name, v_name, o_name = self.names(i)
        g = self.tensors[norm_name].reshape(-1)
        return self.tensors[v_name] * g[None, :], self.tensors[o_name]


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """GGUF row (h, 2i + j) is HF row (h, j*d/2 + i): llama.cpp's permute, reversed."""
    rows, cols = w.shape
    d = rows // n_head
    return w.reshape(n_head, d // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


# ---------------------------------------------------------------- AWM's statistics
def hsic1(k: np.ndarray, l: np.ndarray) -> float:
    n = k.shape[0]
    k, l = k.copy(), l.copy()
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    ones = np.ones(n)
    return (
        np.trace(k @ l)
        + (ones @ k @ ones) * (ones @ l @ ones) / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * (ones @ k @ l @ ones)
    ) / (n * (n - 3))


def cka(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased CKA of two representations with one row per sample."""
    k, l = x @ x.T, y @ y.T
    return float(hsic1(k, l) / np.sqrt(hsic1(k, k) * hsic1(l, l)))


def attention_form(wq: np.ndarray, wk: np.ndarray, n_head: int, n_kv: int) -> np.ndarray:
    """Wq^T Wk with the key heads repeated for their query heads: [hidden, hidden]."""
    d = wk.shape[0] // n_kv
    wk_rep = np.repeat(wk.reshape(n_kv, d, -1), n_head // n_kv, axis=0).reshape(n_head * d, -1)
    return wq.T @ wk_rep


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1), b.reshape(-1)
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def monotone_matching(s: np.ndarray) -> list[tuple[int, int]]:
    transposed = s.shape[0] > s.shape[1]
    if transposed:
        s = s.T
    short, long = s.shape
    best = np.full((short + 1, long + 1), -np.inf)
    best[0, :] = 0.0
    for i in range(1, short + 1):
        for j in range(i, long + 1):
            best[i, j] = max(best[i, j - 1], best[i - 1, j - 1] + s[i - 1, j - 1])
    pairs, i, j = [], short, long
    while i > 0:
        if j > i and best[i, j] == best[i, j - 1]:
            j -= 1
        else:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
    pairs.reverse()
    return [(b, a) for a, b in pairs] if transposed else pairs


def awm(a: Model, b: Model) -> dict:
    sa = sketch(a.tokens, a.embedding.shape[0])
    sb = sketch(b.tokens, b.embedding.shape[0])
    ib = {h: i for h, i in sb}
    shared = [(ia, ib[h]) for h, ia in sa if h in ib]
    if len(shared) < MIN_SHARED_TOKENS:
        return {"shared_tokens": len(shared), "per_layer": [], "score": None}
    ea = a.embedding[[p[0] for p in shared]]
    eb = b.embedding[[p[1] for p in shared]]
    na = ea / np.maximum(np.linalg.norm(ea, axis=0), 1e-300)
    nb = eb / np.maximum(np.linalg.norm(eb, axis=0), 1e-300)
    cos = na.T @ nb
    rows, cols = linear_sum_assignment(1.0 - np.abs(cos))
    a_dims, b_dims = rows.tolist(), cols.tolist()
    signs = np.where(cos[rows, cols] < 0, -1.0, 1.0)

    def aligned(model, i, dims, sgn):
        wq, wk = model.layer(i)
        return wq[:, dims] * sgn[None, :], wk[:, dims] * sgn[None, :]

    ones = np.ones(len(a_dims))
    if a.n_layer == b.n_layer:
        pairs = [(i, i) for i in range(a.n_layer)]
    else:
        forms_a = [attention_form(*aligned(a, i, a_dims, ones), a.n_head, a.n_kv) for i in range(a.n_layer)]
        forms_b = [attention_form(*aligned(b, j, b_dims, signs), b.n_head, b.n_kv) for j in range(b.n_layer)]
        sim = np.array([[cka(fa, fb) for fb in forms_b] for fa in forms_a])
        pairs = monotone_matching(sim)
    per_layer = []
    for i, j in pairs:
        raw_a, raw_b = a.layer(i)[0], b.layer(j)[0]
        wqa, wka = aligned(a, i, a_dims, ones)
        wqb, wkb = aligned(b, j, b_dims, signs)
        per_layer.append({
            "a": i,
            "b": j,
            "wq": cka(wqa.T, wqb.T),
            "wk": cka(wka.T, wkb.T),
            "wq_wk": cka(attention_form(wqa, wka, a.n_head, a.n_kv),
                         attention_form(wqb, wkb, b.n_head, b.n_kv)),
            "parameter_cosine": cosine(raw_a, raw_b) if raw_a.shape == raw_b.shape else None,
        })
    cosines = [l["parameter_cosine"] for l in per_layer]
    return {
        "shared_tokens": len(shared),
        "a_dims": a_dims,
        "b_dims": b_dims,
        "b_signs": signs.tolist(),
        "per_layer": per_layer,
        "score": float(np.mean([l["wq_wk"] for l in per_layer])),
        "cosine_baseline": None if None in cosines else float(np.mean(cosines)),
        "invariants": huref(a, b, pairs),
    }


# ---------------------------------------------------------------- HuRef's invariant terms
INVARIANT_TOKENS = 256
INVARIANT_LAYERS = 2


def repeat_heads(w: np.ndarray, n_head: int, n_kv: int) -> np.ndarray:
    d = w.shape[0] // n_kv
    return np.repeat(w.reshape(n_kv, d, -1), n_head // n_kv, axis=0).reshape(n_head * d, -1)


def invariant_terms(m: Model) -> tuple[list[int], dict]:
    """HuRef's M_a = X (sum_h Wq_h^T Wk_h) X^T and M_b = X (sum_h Wo_h Wv_h)^T X^T of the last
    layers, X the unit-length embedding rows of the first tokens of the sketch."""
    kept = sketch(m.tokens, m.embedding.shape[0])[:INVARIANT_TOKENS]
    x = m.embedding[[i for _, i in kept]]
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    terms = {}
    for i in range(max(0, m.n_layer - INVARIANT_LAYERS), m.n_layer):
        wq, wk = m.layer(i)
        wv, wo = m.value_output(i)
        terms[i] = (
            x @ attention_form(wq, wk, m.n_head, m.n_kv) @ x.T,
            x @ (wo @ repeat_heads(wv, m.n_head, m.n_kv)).T @ x.T,
        )
    return [h for h, _ in kept], terms


def centred_off_diagonal(m: np.ndarray) -> np.ndarray:
    """The term double-centred (row and column means out), its diagonal left out."""
    c = m - m.mean(axis=1, keepdims=True) - m.mean(axis=0, keepdims=True) + m.mean()
    return c[~np.eye(c.shape[0], dtype=bool)]


def huref(a: Model, b: Model, pairs: list[tuple[int, int]]) -> dict:
    ha, ta = invariant_terms(a)
    hb, tb = invariant_terms(b)
    ib = {h: j for j, h in enumerate(hb)}
    shared = [(i, ib[h]) for i, h in enumerate(ha) if h in ib]
    sa, sb = [p[0] for p in shared], [p[1] for p in shared]
    met = [(i, j) for i, j in pairs if i in ta and j in tb]
    if not met:  # last with last
        la, lb = sorted(ta), sorted(tb)
        k = min(len(la), len(lb))
        met = list(zip(la[-k:], lb[-k:]))
    per_layer, values = [], []
    for i, j in met:
        att, vo = (
            cosine(centred_off_diagonal(ta[i][t][np.ix_(sa, sa)]),
                   centred_off_diagonal(tb[j][t][np.ix_(sb, sb)]))
            for t in (0, 1)
        )
        per_layer.append({"a": i, "b": j, "attention": att, "value_output": vo})
        values += [att, vo]
    return {"score": float(np.mean(values)), "shared_tokens": len(shared), "per_layer": per_layer}


# ---------------------------------------------------------------- building pairs
def permute_llama(sd: dict, cfg: dict, seed: int, heads: bool = True, hidden: bool = True) -> dict:
    """The same function with hidden dimensions (and heads) permuted and signs flipped: every
    matrix that reads the residual stream has its columns permuted and flipped, every one that
    writes it its rows; norms permute (RMSNorm commutes with both)."""
    import torch

    rng = np.random.default_rng(seed)
    n = cfg["hidden_size"]
    n_head, n_kv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    d = cfg.get("head_dim") or n // n_head
    perm = torch.from_numpy(rng.permutation(n)) if hidden else torch.arange(n)
    sign = torch.from_numpy(np.where(rng.random(n) < 0.5, -1.0, 1.0)) if hidden else torch.ones(n)
    group = n_head // n_kv
    kv_perm = rng.permutation(n_kv) if heads else np.arange(n_kv)
    # Query heads follow their key head's move; within a group they may also be shuffled.
    q_perm = np.concatenate([
        kv * group + (rng.permutation(group) if heads else np.arange(group)) for kv in kv_perm
    ])
    row_idx = lambda hp: torch.from_numpy(np.concatenate([np.arange(h * d, (h + 1) * d) for h in hp]))
    q_rows, kv_rows = row_idx(q_perm), row_idx(kv_perm)
    out = {}
    for name, w in sd.items():
        w = w.clone()
        s = sign.to(w.dtype)
        if name.endswith(("embed_tokens.weight", "lm_head.weight")):
            w = w[:, perm] * s
        elif name.endswith("norm.weight") and w.shape[0] == n:
            w = w[perm]
        elif name.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight", "gate_proj.weight", "up_proj.weight")):
            w = w[:, perm] * s
            if name.endswith("q_proj.weight"):
                w = w[q_rows]
            elif name.endswith(("k_proj.weight", "v_proj.weight")):
                w = w[kv_rows]
        elif name.endswith("o_proj.weight"):
            w = (w[perm] * s[:, None])[:, q_rows]
        elif name.endswith("down_proj.weight"):
            w = w[perm] * s[:, None]
        out[name] = w.contiguous()
    return out


def drop_layers(sd: dict, cfg: dict, dropped: list[int]) -> tuple[dict, dict]:
    kept = [i for i in range(cfg["num_hidden_layers"]) if i not in dropped]
    out = {}
    for name, w in sd.items():
        if name.startswith("model.layers."):
            i = int(name.split(".")[2])
            if i in dropped:
                continue
            name = name.replace(f"model.layers.{i}.", f"model.layers.{kept.index(i)}.", 1)
        out[name] = w
    cfg = dict(cfg, num_hidden_layers=len(kept))
    return out, cfg


def absorb_and_rescale(sd: dict, cfg: dict, q_scale: float = 2.0) -> dict:
    """The same function written otherwise: each layer's norm gains multiplied into the
    matrices that read them (the norms set to 1), Wq scaled by q_scale and Wk by 1/q_scale
    (every attention logit is unchanged)."""
    import torch

    out = {k: v.clone() for k, v in sd.items()}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        for norm, readers in (
            ("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
            ("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj")),
        ):
            g = out[p + norm + ".weight"]
            for m in readers:
                out[p + m + ".weight"] = out[p + m + ".weight"] * g[None, :]
            out[p + norm + ".weight"] = torch.ones_like(g)
        out[p + "self_attn.q_proj.weight"] *= q_scale
        out[p + "self_attn.k_proj.weight"] /= q_scale
    return out


def extend_vocabulary(sd: dict, cfg: dict, vocab: dict, n_new: int, seed: int):
    """The model with n_new tokens added after its vocabulary, their embedding rows random."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    emb = sd["model.embed_tokens.weight"]
    rows = emb.std() * torch.randn((n_new, emb.shape[1]), generator=gen)
    out = dict(sd, **{"model.embed_tokens.weight": torch.cat([emb, rows.to(emb.dtype)])})
    vocab = dict(vocab, **{f"new{i}": len(vocab) + i for i in range(n_new)})
    return out, dict(cfg, vocab_size=len(vocab)), vocab


def same_logits(sd_a: dict, cfg_a: dict, sd_b: dict, cfg_b: dict, what: str):
    """Both state dicts give the same logits (in float32) over A's vocabulary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    x = torch.tensor([[1, 45, 300, 77, 90, 42]])
    logits = []
    for sd, cfg in ((sd_a, cfg_a), (sd_b, cfg_b)):
        model = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in cfg.items() if k != "architectures"}))
        model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
        model.tie_weights()
        with torch.no_grad():
            logits.append(model(x).logits[..., : cfg_a["vocab_size"]])
    diff = (logits[0] - logits[1]).abs().max().item()
    print(f"{what}: max |logit difference| {diff:.2e}")
    assert diff < 1e-4, diff


def save_folder(out: Path, sd: dict, cfg: dict, tokenizer_json: Path, dtype):
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(dtype).contiguous() for k, v in sd.items()}, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    shutil.copy(tokenizer_json, out / "tokenizer.json")


def random_llama(cfg: dict, seed: int) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in cfg.items() if k != "architectures"}))
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k != "lm_head.weight" or not cfg.get("tie_word_embeddings")}


def tiny(out: Path):
    import torch
    from tokenizers import Tokenizer, models

    out.mkdir(parents=True, exist_ok=True)
    vocab = {f"tok{i}": i for i in range(512)}
    tok_path = out / "tokenizer.json"
    Tokenizer(models.WordLevel(vocab, unk_token="tok0")).save(str(tok_path))
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
        "intermediate_size": 96, "num_hidden_layers": 4, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 512, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "tie_word_embeddings": True, "max_position_embeddings": 256,
    }
    base = random_llama(cfg, 1)
    # Norm gains away from 1, so folding them in is tested.
    gen = torch.Generator().manual_seed(5)
    for k in base:
        if k.endswith("norm.weight"):
            base[k] = 1.0 + 0.3 * torch.randn(base[k].shape, generator=gen)
    noisy = {k: v + 0.05 * v.std() * torch.randn(v.shape, generator=gen) for k, v in base.items()}
    dropped, dropped_cfg = drop_layers(base, cfg, [1, 2])
    absorbed = absorb_and_rescale(base, cfg)
    same_logits(base, cfg, absorbed, cfg, "norms absorbed, Wq and Wk rescaled")
    extended, extended_cfg, extended_vocab = extend_vocabulary(base, cfg, vocab, 64, 11)
    same_logits(base, cfg, extended, extended_cfg, "vocabulary extended")
    folders = {
        "base": (base, cfg),
        "hidden_permuted": (permute_llama(base, cfg, 7, heads=False), cfg),
        "permuted": (permute_llama(base, cfg, 8), cfg),
        "noisy": (noisy, cfg),
        "dropped": (dropped, dropped_cfg),
        "absorbed": (absorbed, cfg),
        "independent_1": (random_llama(cfg, 2), cfg),
        "independent_2": (random_llama(cfg, 3), cfg),
    }
    for name, (sd, c) in folders.items():
        save_folder(out / name, sd, c, tok_path, torch.bfloat16)
    Tokenizer(models.WordLevel(extended_vocab, unk_token="tok0")).save(str(tok_path))
    save_folder(out / "extended", extended, extended_cfg, tok_path, torch.bfloat16)
    folders["extended"] = (extended, extended_cfg)
    tok_path.unlink()
    pairs = [("base", n) for n in folders if n != "base"] + [("independent_1", "independent_2")]
    write_reference(out, pairs)


def write_reference(out: Path, pairs: list[tuple[str, str]]):
    # Models are large in float64: keep the last A, read each B when needed.
    cached: dict[str, Model] = {}
    result = []
    for a, b in pairs:
        if a not in cached:
            cached = {a: Model(out / a)}
        r = awm(cached[a], Model(out / b))
        result.append({"a": a, "b": b, **r})
        inv = r.get("invariants", {}).get("score")
        print(f"{a:>14} vs {b:<16} score {r['score']}  invariants {inv}")
    (out / "reference.json").write_text(json.dumps({"pairs": result}, indent=1) + "\n")


def text_for_training() -> str:
    root = Path(__file__).resolve().parents[2]
    parts = [p.read_text() for p in sorted(root.glob("*.md"))]
    parts += [p.read_text() for p in sorted((root / "crates").glob("*/src/*.rs"))[:40]]
    return "\n".join(parts)


def fine_tune(hf_dir: Path, out: Path, steps: int):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    tok = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.float32)
    ids = tok(text_for_training(), return_tensors="pt").input_ids[0]
    seq, batch = 48, 1
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    model.train()
    for step in range(steps):
        starts = torch.randint(0, ids.numel() - seq - 1, (batch,))
        x = torch.stack([ids[s : s + seq] for s in starts])
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step % 20 == 0 or step == steps - 1:
            print(f"fine-tune step {step}: loss {loss.item():.3f}", flush=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


def same_function(a_dir: Path, b_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM

    x = torch.tensor([[1, 450, 3000, 77, 9000, 42]])
    with torch.no_grad():
        la = AutoModelForCausalLM.from_pretrained(a_dir, torch_dtype=torch.float32)(x).logits
        lb = AutoModelForCausalLM.from_pretrained(b_dir, torch_dtype=torch.float32)(x).logits
    diff = (la - lb).abs().max().item()
    print(f"permuted copy: max |logit difference| {diff:.2e}")
    assert diff < 1e-3, diff


def default(out: Path, wazn: str, steps: int):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_path = Path(os.environ.get("WAZN_CACHE_DIR", Path.home() / ".cache/wazn")) / "models/SmolLM2-135M-Instruct.Q4_1.gguf"
    out.mkdir(parents=True, exist_ok=True)
    base = out / "base.gguf"
    if not base.exists():
        shutil.copy(model_path, base)
    f32 = out / "f32.gguf"
    for name, kind, src in [("f32.gguf", "F32", base), ("q8_0.gguf", "Q8_0", f32), ("q4_k_m.gguf", "Q4_K_M", f32)]:
        if not (out / name).exists():
            subprocess.run([wazn, "quantize", "--allow-requantize", str(src), str(out / name), kind], check=True)
    hf = out / "hf"
    if not (hf / "model.safetensors").exists():
        # transformers dequantizes the GGUF and undoes its Q/K row permutation; a model loaded
        # that way refuses save_pretrained, so its tensors and config are written here.
        from safetensors.torch import save_file

        model = AutoModelForCausalLM.from_pretrained(out, gguf_file="base.gguf", torch_dtype=torch.float32)
        tied = model.config.tie_word_embeddings
        hf.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()
             if not (tied and k == "lm_head.weight")},
            str(hf / "model.safetensors"),
        )
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        (hf / "config.json").write_text(json.dumps(config, indent=1))
        AutoTokenizer.from_pretrained(out, gguf_file="base.gguf").save_pretrained(hf)
    cfg = json.loads((hf / "config.json").read_text())
    sd = load_file(str(hf / "model.safetensors"))
    tok_json = hf / "tokenizer.json"
    if not (out / "permuted" / "model.safetensors").exists():
        save_folder(out / "permuted", permute_llama(sd, cfg, 2026), cfg, tok_json, torch.float32)
        same_function(hf, out / "permuted")
    if not (out / "dropped" / "model.safetensors").exists():
        d_sd, d_cfg = drop_layers(sd, cfg, [5, 11, 17, 23, 29])
        save_folder(out / "dropped", d_sd, d_cfg, tok_json, torch.bfloat16)
    if steps > 0 and not (out / "finetuned" / "model.safetensors").exists():
        fine_tune(hf, out / "finetuned", steps)
    for seed in (1, 2):
        folder = out / f"independent_{seed}"
        if not (folder / "model.safetensors").exists():
            save_folder(folder, random_llama(cfg, 100 + seed), cfg, tok_json, torch.bfloat16)
    others = ["q8_0.gguf", "q4_k_m.gguf", "hf", "permuted", "dropped", "independent_1", "independent_2"]
    if (out / "finetuned" / "model.safetensors").exists():
        others.insert(4, "finetuned")
    write_reference(out, [("base.gguf", o) for o in others] + [("independent_1", "independent_2")])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["tiny", "default"])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--wazn", default="target/release/wazn")
    parser.add_argument("--steps", type=int, default=200, help="fine-tuning steps (0: no fine-tuned pair)")
    args = parser.parse_args()
    if args.mode == "tiny":
        tiny(args.out or Path("crates/wazn-fingerprint/tests/data/fingerprint"))
    else:
        default(args.out or Path.home() / ".cache/wazn/fingerprint-pairs", args.wazn, args.steps)


if __name__ == "__main__":
    main()

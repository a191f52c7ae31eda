#!/usr/bin/env python3
"""A tiny random Qwen3 embedding model in the layout of the released Qwen3-Embedding files, the
embeddings sentence-transformers and transformers compute with it, and the same model as a
llama.cpp GGUF.

Writes (under crates/wazn-models/tests/data/qwen3_embedding/, or --out):
  hf/config.json, hf/model.safetensors
      The dense Qwen3 of qwen3_tiny.py (hidden 64, 4 layers, head_dim 32, per-head q/k norms,
      tied embeddings) with its own seed, saved as Qwen3-Embedding-0.6B is: config.json says
      Qwen3ForCausalLM, but the tensors are the base model's, named WITHOUT the "model." prefix
      (embed_tokens.weight, layers.N..., norm.weight) and with no lm_head.weight.
  hf/tokenizer.json, hf/tokenizer_config.json
      qwen3_tiny.py's byte-level BPE (300 entries + <|endoftext|> 300, <|im_start|> 301,
      <|im_end|> 302) whose post-processor appends <|endoftext|> to every encoding
      (TemplateProcessing "$A <|endoftext|>"), as Qwen3-Embedding's does; tokenizer_config.json
      names <|im_end|> as eos_token and <|endoftext|> as pad_token.
  hf/modules.json, hf/1_Pooling/config.json, hf/config_sentence_transformers.json
      sentence-transformers' pipeline of Qwen3-Embedding: Transformer, then Pooling with
      pooling_mode_lasttoken (include_prompt true), then Normalize (which has no files, so
      its folder is not written, as in the released repository).
  tiny.gguf
      hf/ converted by llama.cpp's own convert_hf_to_gguf.py (the pre-tokenizer hash lookup
      shimmed as in qwen3_tiny.py). The converter reads modules.json and writes
      qwen3.pooling_type = 3 (last), and reads the post-processor: tokenizer.ggml.add_eos_token
      = true with eos_token_id = 300 (<|endoftext|>). Every tensor equals its HF tensor.
  reference.json
      For each input: its token ids and its embedding, unit length, computed by
      sentence-transformers (SentenceTransformer(hf).encode, which reads modules.json) and
      checked against transformers alone (AutoModel, last_hidden_state of the last token, then
      L2-normalised) and against a float64 numpy forward pass from the on-disk tensors. Text
      inputs also carry the 16-dimension embedding (sentence-transformers' truncate_dim = 16,
      normalize_embeddings = True: truncated, then made unit length again), and the
      embeddings of the same network with mean and with CLS pooling instead (for a folder
      whose 1_Pooling/config.json says so). One input is
      given as token ids only (no <|endoftext|> appended), computed by transformers.

Run (from the repository root; CPU only, about a minute, nothing is downloaded):
  HF_HUB_OFFLINE=1 /path/to/venv/bin/python scripts/reference/qwen3_embedding_tiny.py \
      [--out crates/wazn-models/tests/data/qwen3_embedding] [--llama-cpp /path/to/llama.cpp]
Needs the packages of requirements.txt plus requirements-embedding.txt. Deterministic: fixed
seeds, numpy generators for all random data.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoModel, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import qwen3_tiny as base  # noqa: E402  (the tiny Qwen3's shapes, weights and toy tokenizer)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "crates/wazn-models/tests/data/qwen3_embedding"
ARCH = base.Arch(name="qwen3_embedding", moe=False, layers=4, intermediate=128, tie=True,
                 seed=20261208)
EOT = "<|endoftext|>"
EOT_ID = base.BPE_SIZE  # 300
TRUNCATE_DIM = 16
SEED_IDS = 11

TEXTS = [
    "the quick brown fox",
    "Instruct: Given a web search query, retrieve relevant passages that answer the query\n"
    "Query: what is a tiny qwen3 model?",
    # Long enough for several 16-position cache blocks and a chunked prompt.
    " ".join(["a tiny qwen3 model for tests; per-head q/k norms, tied embeddings and experts."] * 3
             + ["the lazy dog sleeps while the quick brown fox jumps over it again and again."]),
    "وزن 重量 weight 🙂",
    "a",
]


def write_tokenizer(folder: Path) -> None:
    """qwen3_tiny.py's toy tokenizer, with Qwen3-Embedding's post-processor: every encoding
    ends with <|endoftext|>, which the last-token pooling reads."""
    from tokenizers import Tokenizer, processors
    base.write_tokenizer(folder)
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A:0 {EOT}:0", pair=f"$A:0 {EOT}:0 $B:1 {EOT}:1",
        special_tokens=[(EOT, EOT_ID)])
    tok.save(str(folder / "tokenizer.json"))
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg["padding_side"] = "left"
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def write_sentence_transformers(folder: Path) -> None:
    """modules.json and its module folders, as Qwen3-Embedding-0.6B ships them."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling/config.json").write_text(json.dumps({
        "word_embedding_dimension": base.HIDDEN,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": False,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": True,
        "include_prompt": True,
    }, indent=2) + "\n")
    (folder / "config_sentence_transformers.json").write_text(json.dumps({
        "prompts": {"query": "Instruct: Given a web search query, retrieve relevant passages "
                             "that answer the query\nQuery:", "document": ""},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    }, indent=2) + "\n")


def numpy_last_hidden(tensors, ids: list[int]) -> np.ndarray:
    """The final-norm hidden state of the last position in float64, from the on-disk tensors:
    qwen3_tiny.py's numpy forward pass with the identity as its (tied) output matrix."""
    logits, _ = base.numpy_forward(ARCH, _IdentityHead(tensors), ids)
    return logits[-1]


class _IdentityHead(dict):
    """The on-disk tensors, except that the tied output matrix read last by numpy_forward is
    the identity, so that its "logits" are the final hidden states."""

    def __init__(self, tensors):
        super().__init__(tensors)
        self._reads = 0

    def __getitem__(self, key):
        if key == "model.embed_tokens.weight":
            self._reads += 1
            if self._reads > 1:  # the first read is the token embedding, the second the head
                return torch.eye(base.HIDDEN, dtype=torch.float64)
        return super().__getitem__(key)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--llama-cpp", type=Path, default=base.DEFAULT_LLAMA_CPP)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    from sentence_transformers import SentenceTransformer
    import sentence_transformers

    out = args.out
    hf_dir = out / "hf"
    if hf_dir.exists():
        shutil.rmtree(hf_dir)
    hf_dir.mkdir(parents=True)
    tensors = base.make_tensors(ARCH)  # "model."-prefixed names, no lm_head (tied)
    on_disk = {name.removeprefix("model."): t for name, t in tensors.items()}
    base.check("lm_head.weight" not in on_disk, "a tied model has no lm_head")
    save_file(on_disk, str(hf_dir / "model.safetensors"), metadata={"format": "pt"})
    cfg = base.config_json(ARCH)
    (hf_dir / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    write_tokenizer(hf_dir)
    write_sentence_transformers(hf_dir)

    # transformers alone: the base model (what sentence-transformers' Transformer module loads).
    model, info = AutoModel.from_pretrained(hf_dir, dtype=torch.float32,
                                            attn_implementation="eager", output_loading_info=True)
    model.eval()
    for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        base.check(not info.get(k), f"loading reported {k}: {info.get(k)}")
    params = dict(model.named_parameters())
    base.check(sorted(params) == sorted(on_disk), f"parameters {sorted(set(params) ^ set(on_disk))}")
    for name, value in on_disk.items():
        base.check(torch.equal(params[name].detach(), value.float()), f"{name} differs from the file")
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)

    # The weights are bfloat16 on disk; computed in float32 as by transformers above.
    F32 = {"dtype": torch.float32, "attn_implementation": "eager"}
    st = SentenceTransformer(str(hf_dir), device="cpu", model_kwargs=F32)
    st_names = [type(m).__name__ for m in st]
    base.check(st_names == ["Transformer", "Pooling", "Normalize"], f"modules {st_names}")
    pooling = st[1].get_config_dict()
    base.check(pooling.get("pooling_mode_lasttoken") is True or
               pooling.get("pooling_mode") == "lasttoken", f"pooling {pooling}")
    st_short = SentenceTransformer(str(hf_dir), device="cpu", model_kwargs=F32,
                                  truncate_dim=TRUNCATE_DIM)
    # The same network pooled the other ways a Pooling module's config can say.
    from sentence_transformers.models import Normalize, Pooling
    other = {mode: SentenceTransformer(modules=[st[0], Pooling(base.HIDDEN, pooling_mode=mode),
                                                Normalize()], device="cpu")
             for mode in ("mean", "cls")}

    inputs = []
    worst_st_vs_hf, worst_np = 0.0, 0.0
    for text in TEXTS:
        ids = tokenizer(text)["input_ids"]
        base.check(ids[-1] == EOT_ID and EOT_ID not in ids[:-1], f"{text!r}: ids {ids}")
        with torch.inference_mode():
            hidden = model(torch.tensor([ids])).last_hidden_state[0, -1].double().numpy()
        by_hf = unit(hidden)
        by_st = st.encode([text], batch_size=1, convert_to_numpy=True)[0].astype(np.float64)
        short = st_short.encode([text], batch_size=1, convert_to_numpy=True,
                                normalize_embeddings=True)[0].astype(np.float64)
        by_np = unit(numpy_last_hidden(tensors, ids))
        worst_st_vs_hf = max(worst_st_vs_hf, float(np.abs(by_st - by_hf).max()))
        worst_np = max(worst_np, float(np.abs(by_np - by_st).max()))
        base.check(np.allclose(short, unit(by_st[:TRUNCATE_DIM]), atol=1e-6),
                   "truncate_dim is not truncate-then-normalise")
        pooled = {f"embedding_{mode}": m.encode([text], batch_size=1)[0].tolist()
                  for mode, m in other.items()}
        with torch.inference_mode():
            states = model(torch.tensor([ids])).last_hidden_state[0].double().numpy()
        base.check(np.allclose(pooled["embedding_mean"], unit(states.mean(0)), atol=1e-6) and
                   np.allclose(pooled["embedding_cls"], unit(states[0]), atol=1e-6),
                   "mean / cls pooling is not the mean / first row, normalised")
        inputs.append({"text": text, "input_ids": ids, "embedding": by_st.tolist(),
                       f"embedding_{TRUNCATE_DIM}": short.tolist(), **pooled})
        print(f"  {len(ids):3d} tokens: |st - transformers| {np.abs(by_st - by_hf).max():.2e}, "
              f"|st - numpy f64| {np.abs(by_np - by_st).max():.2e}")
    rng = np.random.default_rng(SEED_IDS)
    ids = rng.integers(0, base.BPE_SIZE, size=40).tolist()
    with torch.inference_mode():
        hidden = model(torch.tensor([ids])).last_hidden_state[0, -1].double().numpy()
    by_np = unit(numpy_last_hidden(tensors, ids))
    worst_np = max(worst_np, float(np.abs(by_np - unit(hidden)).max()))
    inputs.append({"input_ids": ids, "embedding": unit(hidden).tolist()})
    # float32 rounding only, between three computations of the same vectors
    base.check(worst_st_vs_hf < 1e-6, f"sentence-transformers vs transformers: {worst_st_vs_hf}")
    base.check(worst_np < 1e-5, f"numpy float64 vs float32: {worst_np}")
    # The vectors must tell inputs apart, or a comparison of them would prove little.
    vecs = np.array([i["embedding"] for i in inputs])
    cos = vecs @ vecs.T
    off = float(np.max(cos[~np.eye(len(vecs), dtype=bool)]))
    base.check(off < 0.99, f"two inputs embed almost alike (cosine {off})")

    reference = {
        "generator": "scripts/reference/qwen3_embedding_tiny.py",
        "transformers_version": transformers.__version__,
        "sentence_transformers_version": sentence_transformers.__version__,
        "torch_version": torch.__version__,
        "compute_dtype": "float32",
        "pooling": "lasttoken",
        "normalized": True,
        "hidden_size": base.HIDDEN,
        "truncate_dim": TRUNCATE_DIM,
        "note": "embedding: sentence-transformers' encode (Transformer, last-token Pooling, "
                "Normalize) of text, whose tokenizer appends <|endoftext|> (input_ids); for an "
                "input given as input_ids only, transformers' last_hidden_state of its last "
                "token, L2-normalised. embedding_16: encode with truncate_dim 16 and "
                "normalize_embeddings (truncated, then unit length again). embedding_mean, "
                "embedding_cls: the same Transformer module with a mean or cls Pooling module "
                "instead, then Normalize.",
        "max_abs_sentence_transformers_minus_transformers": worst_st_vs_hf,
        "max_abs_float32_minus_numpy_float64": worst_np,
        "max_cosine_between_inputs": off,
        "inputs": inputs,
    }
    (out / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")

    gguf_path = out / "tiny.gguf"
    make_gguf(hf_dir, gguf_path, args.llama_cpp)
    info = base.verify_gguf(ARCH, gguf_path, tensors)
    meta = {k: v["value"] for k, v in info["metadata"].items()}
    base.check(meta.get("qwen3.pooling_type") == 3, f"pooling_type {meta.get('qwen3.pooling_type')}")
    base.check(meta.get("tokenizer.ggml.add_eos_token") is True, "add_eos_token is not true")
    base.check(meta.get("tokenizer.ggml.eos_token_id") == EOT_ID,
               f"eos_token_id {meta.get('tokenizer.ggml.eos_token_id')}")
    print("GGUF metadata:")
    for k, v in info["metadata"].items():
        print(f"  {k} ({'/'.join(v['type'])}) = {v['value']}")
    sizes = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    for k, v in sizes.items():
        print(f"  {k:36s} {v / 1024:8.1f} KiB")
    print(f"max |sentence-transformers - transformers| {worst_st_vs_hf:.2e}, "
          f"max |float32 - numpy float64| {worst_np:.2e}, max cosine between inputs {off:.4f}")


def make_gguf(hf_dir: Path, out_file: Path, llama_cpp: Path) -> None:
    """llama.cpp's converter on hf/ as it is (it has its tokenizer and modules.json)."""
    with tempfile.TemporaryDirectory() as tmp:
        shim = Path(tmp) / "shim.py"
        shim.write_text(base.CONVERTER_SHIM)
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        env.pop("NO_LOCAL_GGUF", None)
        res = subprocess.run([sys.executable, str(shim), str(llama_cpp), str(hf_dir), str(out_file)],
                             env=env, capture_output=True, text=True)
        if res.returncode != 0:
            print(res.stdout[-4000:], res.stderr[-4000:])
            raise SystemExit("CHECK FAILED: convert_hf_to_gguf.py failed")


if __name__ == "__main__":
    main()

"""The official `openai` Python SDK's embeddings (`client.embeddings`) and the `ollama`
client's (`embed`, and the older `embeddings`) against `wazn serve`.

The default model is a chat model, so scripts/test-sdk starts a second server on the tiny
Qwen3 embedding model committed with the Rust tests (written by
scripts/reference/qwen3_embedding_tiny.py with sentence-transformers) and passes its address
as WAZN_EMBED_BASE_URL and its name as WAZN_EMBED_MODEL. The vectors are checked against
that file's sentence-transformers reference, decoded by each client itself.
"""

import json
import math
import os
import unittest
from pathlib import Path

import ollama
import openai

BASE_URL = os.environ["WAZN_BASE_URL"]
EMBED_BASE_URL = os.environ["WAZN_EMBED_BASE_URL"]
API_KEY = os.environ["WAZN_API_KEY"]
MODEL = os.environ["WAZN_MODEL"]
EMBED_MODEL = os.environ["WAZN_EMBED_MODEL"]

REFERENCE = json.loads(
    (Path(__file__).resolve().parents[2]
     / "crates/wazn-models/tests/data/qwen3_embedding/reference.json").read_text())
TEXTS = [i for i in REFERENCE["inputs"] if "text" in i]
BY_IDS = next(i for i in REFERENCE["inputs"] if "text" not in i)
MAX_ABS_DIFF = 1e-3
MIN_COSINE = 0.9999


def client(base_url=EMBED_BASE_URL):
    return openai.OpenAI(base_url=base_url, api_key=API_KEY, max_retries=0, timeout=120)


def ollama_client(base_url=EMBED_BASE_URL):
    # The Ollama client takes the server's address without `/v1`.
    host = base_url.removesuffix("/").removesuffix("/v1")
    return ollama.Client(host=host, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120)


# One Ollama client (one connection pool) for the embedding server's tests.
OLLAMA = ollama_client()


class CloseVectors(unittest.TestCase):
    def assert_close(self, got, want, what):
        got = [float(x) for x in got]
        self.assertEqual(len(got), len(want), what)
        max_abs = max(abs(a - b) for a, b in zip(got, want))
        dot = sum(a * b for a, b in zip(got, want))
        cos = dot / math.sqrt(sum(a * a for a in got) * sum(b * b for b in want))
        self.assertLessEqual(max_abs, MAX_ABS_DIFF, what)
        self.assertGreaterEqual(cos, MIN_COSINE, what)
        self.assertAlmostEqual(math.sqrt(sum(a * a for a in got)), 1.0, places=5, msg=what)


class Embeddings(CloseVectors):
    def test_the_sdk_default_base64_decodes_to_the_reference(self):
        # Without encoding_format the SDK asks for base64 and decodes it itself.
        r = client().embeddings.create(model=EMBED_MODEL, input=[i["text"] for i in TEXTS])
        self.assertEqual(r.model, EMBED_MODEL)
        self.assertEqual([d.index for d in r.data], list(range(len(TEXTS))))
        for d, want in zip(r.data, TEXTS):
            self.assert_close(d.embedding, want["embedding"], want["text"])
        n_tokens = sum(len(i["input_ids"]) for i in TEXTS)
        self.assertEqual(r.usage.prompt_tokens, n_tokens)
        self.assertEqual(r.usage.total_tokens, n_tokens)

    def test_floats_one_string_and_dimensions(self):
        want = TEXTS[1]
        r = client().embeddings.create(model=EMBED_MODEL, input=want["text"],
                                       encoding_format="float")
        self.assert_close(r.data[0].embedding, want["embedding"], "float")
        d = REFERENCE["truncate_dim"]
        r = client().embeddings.create(model=EMBED_MODEL, input=want["text"], dimensions=d)
        self.assert_close(r.data[0].embedding, want[f"embedding_{d}"], "dimensions")

    def test_token_ids(self):
        r = client().embeddings.create(model=EMBED_MODEL,
                                       input=[TEXTS[0]["input_ids"], BY_IDS["input_ids"]])
        self.assert_close(r.data[0].embedding, TEXTS[0]["embedding"], "ids of a text")
        self.assert_close(r.data[1].embedding, BY_IDS["embedding"], "ids")

    def test_bad_input_is_a_bad_request(self):
        too_long = [i % 300 for i in range(4096)]
        for kwargs in ({"input": []}, {"input": ""}, {"input": too_long},
                       {"input": "a", "dimensions": REFERENCE["hidden_size"] + 1}):
            with self.assertRaises(openai.BadRequestError, msg=str(kwargs)[:80]) as caught:
                client().embeddings.create(model=EMBED_MODEL, **kwargs)
            self.assertTrue(caught.exception.message)
        with self.assertRaises(openai.NotFoundError):
            client().embeddings.create(model="text-embedding-3-small", input="a")

    def test_a_chat_model_cannot_embed(self):
        with self.assertRaises(openai.BadRequestError) as caught:
            client(BASE_URL).embeddings.create(model=MODEL, input="hello")
        self.assertIn("does not embed", caught.exception.message)


class OllamaEmbed(CloseVectors):
    def test_embed_gives_the_reference_vectors(self):
        r = OLLAMA.embed(model=EMBED_MODEL, input=[i["text"] for i in TEXTS])
        self.assertEqual(r.model, EMBED_MODEL)
        self.assertEqual(len(r.embeddings), len(TEXTS))
        for got, want in zip(r.embeddings, TEXTS):
            self.assert_close(got, want["embedding"], want["text"])
        self.assertEqual(r.prompt_eval_count, sum(len(i["input_ids"]) for i in TEXTS))
        self.assertGreater(r.total_duration, 0)

    def test_one_string_shortened_with_options_and_keep_alive(self):
        want = TEXTS[1]
        d = REFERENCE["truncate_dim"]
        r = OLLAMA.embed(model=f"{EMBED_MODEL}:latest", input=want["text"],
                                  dimensions=d, keep_alive="5m", options={"num_ctx": 2048})
        self.assertEqual(len(r.embeddings), 1)
        self.assert_close(r.embeddings[0], want[f"embedding_{d}"], "dimensions")

    def test_a_long_input_is_cut_to_the_context_unless_truncate_is_false(self):
        # scripts/test-sdk serves the embedding model with a 2048-token context.
        text = "hello world " * 4096
        r = OLLAMA.embed(model=EMBED_MODEL, input=text)
        self.assertEqual(r.prompt_eval_count, 2048)
        self.assertAlmostEqual(math.sqrt(sum(x * x for x in r.embeddings[0])), 1.0, places=5)
        with self.assertRaises(ollama.ResponseError) as caught:
            OLLAMA.embed(model=EMBED_MODEL, input=text, truncate=False)
        self.assertEqual(caught.exception.status_code, 400)
        self.assertIn("context", caught.exception.error)

    def test_the_older_embeddings_route_gives_the_vector_as_pooled(self):
        want = TEXTS[0]
        r = OLLAMA.embeddings(model=EMBED_MODEL, prompt=want["text"])
        norm = math.sqrt(sum(x * x for x in r.embedding))
        self.assertNotAlmostEqual(norm, 1.0, places=2)
        self.assert_close([x / norm for x in r.embedding], want["embedding"], "made unit length")

    def test_bad_input_is_a_response_error(self):
        with self.assertRaises(ollama.ResponseError) as caught:
            OLLAMA.embed(model="nomic-embed-text", input="a")
        self.assertEqual(caught.exception.status_code, 404)
        with self.assertRaises(ollama.ResponseError) as caught:
            OLLAMA.embed(model=EMBED_MODEL, input=["a", ""])
        self.assertEqual(caught.exception.status_code, 400)
        self.assertTrue(caught.exception.error)

    def test_a_chat_model_cannot_embed(self):
        with self.assertRaises(ollama.ResponseError) as caught:
            ollama_client(BASE_URL).embed(model=MODEL, input="hello")
        self.assertEqual(caught.exception.status_code, 400)
        self.assertIn("does not embed", caught.exception.error)


if __name__ == "__main__":
    unittest.main()

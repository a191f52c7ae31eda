"""Legacy completions through the official `openai` SDK: `echo` with `logprobs` (the prompt's
own log-probabilities, as lm-evaluation-harness asks for them), token-id prompts and several
prompts in one request. Run by scripts/test-sdk (see test_openai_sdk.py)."""

import json
import os
import unittest
import urllib.request

import openai

BASE_URL = os.environ["WAZN_BASE_URL"]
API_KEY = os.environ["WAZN_API_KEY"]
MODEL = os.environ["WAZN_MODEL"]
ROOT = BASE_URL.rsplit("/v1", 1)[0]


def client():
    return openai.OpenAI(base_url=BASE_URL, api_key=API_KEY, max_retries=0, timeout=120)


def tokenize(text):
    """The server's own token ids of `text` (vLLM's /tokenize)."""
    request = urllib.request.Request(
        ROOT + "/tokenize",
        data=json.dumps({"model": MODEL, "prompt": text}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"},
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.load(r)["tokens"]


class Echo(unittest.TestCase):
    def test_echo_logprobs_of_the_prompt_alone(self):
        prompt = "The quick brown fox jumps over the lazy dog."
        r = client().completions.create(model=MODEL, prompt=prompt, echo=True, logprobs=1, max_tokens=0)
        choice = r.choices[0]
        self.assertEqual(choice.text, prompt)
        self.assertEqual(choice.finish_reason, "length")
        lp = choice.logprobs
        n = len(tokenize(prompt))
        self.assertEqual(r.usage.prompt_tokens, n)
        self.assertEqual(r.usage.completion_tokens, 0)
        self.assertEqual(len(lp.tokens), n)
        self.assertEqual("".join(lp.tokens), prompt)
        self.assertIsNone(lp.token_logprobs[0])
        self.assertIsNone(lp.top_logprobs[0])
        for token, logprob, top, offset in zip(lp.tokens[1:], lp.token_logprobs[1:], lp.top_logprobs[1:], lp.text_offset[1:]):
            self.assertLessEqual(logprob, 0.0)
            # The chosen token and the best one; greedy exactly when they are the same.
            self.assertIn(token, top)
            self.assertEqual(top[token], logprob)
            self.assertLessEqual(len(top), 2)
            self.assertEqual(prompt[offset:offset + len(token)], token)

    def test_echo_then_generation(self):
        prompt = "One, two, three,"
        plain = client().completions.create(model=MODEL, prompt=prompt, max_tokens=3, temperature=0, logprobs=2)
        echoed = client().completions.create(
            model=MODEL, prompt=prompt, max_tokens=3, temperature=0, logprobs=2, echo=True
        )
        n = len(tokenize(prompt))
        self.assertEqual(echoed.choices[0].text, prompt + plain.choices[0].text)
        tail = echoed.choices[0].logprobs.token_logprobs[n:]
        for a, b in zip(tail, plain.choices[0].logprobs.token_logprobs):
            self.assertAlmostEqual(a, b, places=4)
        self.assertEqual(echoed.choices[0].logprobs.tokens[n:], plain.choices[0].logprobs.tokens)
        streamed = "".join(
            c.choices[0].text
            for c in client().completions.create(
                model=MODEL, prompt=prompt, max_tokens=3, temperature=0, echo=True, stream=True
            )
            if c.choices
        )
        self.assertEqual(streamed, echoed.choices[0].text)


class Prompts(unittest.TestCase):
    def test_token_id_prompt(self):
        prompt = "The capital of France is"
        kwargs = dict(model=MODEL, max_tokens=4, temperature=0)
        by_text = client().completions.create(prompt=prompt, **kwargs)
        by_ids = client().completions.create(prompt=tokenize(prompt), **kwargs)
        self.assertEqual(by_ids.choices[0].text, by_text.choices[0].text)
        echoed = client().completions.create(prompt=tokenize(prompt), echo=True, **kwargs)
        self.assertEqual(echoed.choices[0].text, prompt + by_text.choices[0].text)

    def test_several_prompts(self):
        prompts = ["The sky is", "Water boils at"]
        kwargs = dict(model=MODEL, max_tokens=3, temperature=0)
        singles = [client().completions.create(prompt=p, **kwargs).choices[0].text for p in prompts]
        r = client().completions.create(prompt=prompts, n=2, **kwargs)
        self.assertEqual([c.index for c in r.choices], [0, 1, 2, 3])
        self.assertEqual([c.text for c in r.choices], [singles[0], singles[0], singles[1], singles[1]])
        self.assertEqual(r.usage.prompt_tokens, sum(len(tokenize(p)) for p in prompts))
        ids = client().completions.create(prompt=[tokenize(p) for p in prompts], **kwargs)
        self.assertEqual([c.text for c in ids.choices], singles)

    def test_bad_prompts(self):
        for prompt in ([], [[]], [1, -1], [10**9]):
            with self.assertRaises(openai.BadRequestError) as e:
                client().completions.create(model=MODEL, prompt=prompt, max_tokens=1)
            self.assertIn("prompt", str(e.exception))
        with self.assertRaises(openai.BadRequestError) as e:
            client().completions.create(model=MODEL, prompt="x", suffix="y", max_tokens=1)
        self.assertIn("suffix", str(e.exception))


if __name__ == "__main__":
    unittest.main()

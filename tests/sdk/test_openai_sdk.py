"""The official `openai` Python SDK against a running `wazn serve`.

Run by scripts/test-sdk, which starts the server on a free loopback port and sets
WAZN_BASE_URL (e.g. http://127.0.0.1:PORT/v1), WAZN_API_KEY and WAZN_MODEL. By hand:

    .venv-sdk/bin/python -m unittest discover -s tests/sdk -v
"""

import os
import unittest
import urllib.request

import openai

BASE_URL = os.environ["WAZN_BASE_URL"]
API_KEY = os.environ["WAZN_API_KEY"]
MODEL = os.environ["WAZN_MODEL"]


def client(api_key=API_KEY):
    # No retries: a test must see the first answer; bounded time per request.
    return openai.OpenAI(base_url=BASE_URL, api_key=api_key, max_retries=0, timeout=120)


def ask(content):
    return [{"role": "user", "content": content}]


class Chat(unittest.TestCase):
    def test_chat_completion(self):
        r = client().chat.completions.create(
            model=MODEL, messages=ask("What is the capital of France?"), max_tokens=12, temperature=0
        )
        self.assertEqual(r.object, "chat.completion")
        self.assertEqual(r.model, MODEL)
        self.assertEqual(len(r.choices), 1)
        choice = r.choices[0]
        self.assertEqual(choice.message.role, "assistant")
        self.assertTrue(choice.message.content)
        self.assertIn(choice.finish_reason, ("stop", "length"))
        self.assertLessEqual(r.usage.completion_tokens, 12)
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens)

    def test_streaming_chat_equals_whole(self):
        kwargs = dict(model=MODEL, messages=ask("Name three animals."), max_tokens=16, temperature=0)
        whole = client().chat.completions.create(**kwargs)
        stream = client().chat.completions.create(
            stream=True, stream_options={"include_usage": True}, **kwargs
        )
        text, finish, usage = "", None, None
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for c in chunk.choices:
                text += c.delta.content or ""
                finish = c.finish_reason or finish
        self.assertEqual(text, whole.choices[0].message.content)
        self.assertEqual(finish, whole.choices[0].finish_reason)
        self.assertEqual(usage.completion_tokens, whole.usage.completion_tokens)

    def test_n_stop_seed_and_logprobs(self):
        r = client().chat.completions.create(
            model=MODEL, messages=ask("Say hello."), max_completion_tokens=5, temperature=0,
            n=2, logprobs=True, top_logprobs=2,
        )
        self.assertEqual([c.index for c in r.choices], [0, 1])
        self.assertEqual(r.choices[0].message.content, r.choices[1].message.content)
        entries = r.choices[0].logprobs.content
        self.assertTrue(entries)
        for e in entries:
            self.assertEqual(len(e.top_logprobs), 2)
            self.assertEqual(e.token, e.top_logprobs[0].token)
        sampled = dict(model=MODEL, messages=ask("Tell a joke."), max_tokens=10, temperature=1.0, seed=7)
        a = client().chat.completions.create(**sampled)
        b = client().chat.completions.create(**sampled)
        self.assertEqual(a.choices[0].message.content, b.choices[0].message.content)
        full = a.choices[0].message.content
        if len(full) > 4:
            stop = full[2:4]
            s = client().chat.completions.create(stop=[stop], **sampled)
            self.assertEqual(s.choices[0].message.content, full[: full.find(stop)])
            self.assertEqual(s.choices[0].finish_reason, "stop")


class Completions(unittest.TestCase):
    def test_completion_whole_and_streamed(self):
        kwargs = dict(model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0)
        whole = client().completions.create(**kwargs)
        self.assertEqual(whole.object, "text_completion")
        text = whole.choices[0].text
        self.assertTrue(text)
        streamed = "".join(
            c.choices[0].text for c in client().completions.create(stream=True, **kwargs) if c.choices
        )
        self.assertEqual(streamed, text)

    def test_models(self):
        models = client().models.list()
        self.assertEqual([m.id for m in models.data], [MODEL])


class Errors(unittest.TestCase):
    def test_bad_request(self):
        with self.assertRaises(openai.BadRequestError) as e:
            client().chat.completions.create(model=MODEL, messages=[], max_tokens=4)
        self.assertIn("messages", str(e.exception))
        with self.assertRaises(openai.BadRequestError):
            client().chat.completions.create(model=MODEL, messages=ask("hi"), max_tokens=-1)
        with self.assertRaises(openai.BadRequestError):
            client().chat.completions.create(model=MODEL, messages=[{"role": "wizard", "content": "hi"}])
        with self.assertRaises(openai.BadRequestError) as e:
            client().completions.create(model=MODEL, prompt="hello " * 100000, max_tokens=1)
        self.assertIn("context", str(e.exception))

    def test_unknown_model(self):
        with self.assertRaises(openai.NotFoundError):
            client().chat.completions.create(model="no-such-model", messages=ask("hi"), max_tokens=2)

    def test_authentication(self):
        with self.assertRaises(openai.AuthenticationError):
            client(api_key="wrong-key").models.list()
        # /health needs no key.
        root = BASE_URL.rsplit("/v1", 1)[0]
        with urllib.request.urlopen(root + "/health", timeout=10) as r:
            self.assertEqual(r.status, 200)

    def test_oversize_body(self):
        with self.assertRaises(openai.APIStatusError) as e:
            client().completions.create(model=MODEL, prompt="x" * (2 << 20), max_tokens=1)
        self.assertEqual(e.exception.status_code, 413)


if __name__ == "__main__":
    unittest.main()

"""The official `ollama` Python client against a running `wazn serve` (Ollama's native API).

Run by scripts/test-sdk, which starts the server on a free loopback port and sets
WAZN_BASE_URL (e.g. http://127.0.0.1:PORT/v1), WAZN_API_KEY and WAZN_MODEL. The Ollama client
takes the server's address without `/v1`.
"""

import json
import os
import unittest

import jsonschema
import ollama
import openai

BASE_URL = os.environ["WAZN_BASE_URL"]
API_KEY = os.environ["WAZN_API_KEY"]
MODEL = os.environ["WAZN_MODEL"]
HOST = BASE_URL.removesuffix("/").removesuffix("/v1")


def client(api_key=API_KEY):
    return ollama.Client(host=HOST, headers={"Authorization": f"Bearer {api_key}"}, timeout=120)


# One client (one connection pool) for the suite; only the wrong-key test makes another.
CLIENT = client()


def ask(content):
    return [{"role": "user", "content": content}]


GREEDY = {"temperature": 0, "num_predict": 24}


class Models(unittest.TestCase):
    def test_list_names_the_served_model(self):
        models = CLIENT.list().models
        self.assertEqual([m.model for m in models], [MODEL])
        model = models[0]
        self.assertGreater(model.size, 0)
        self.assertIsNotNone(model.modified_at)
        self.assertEqual(model.details.format, "gguf")
        self.assertEqual(model.details.family, "llama")
        self.assertTrue(model.details.quantization_level)
        self.assertTrue(model.details.parameter_size.endswith("M"))

    def test_show_gives_template_metadata_and_capabilities(self):
        shown = CLIENT.show(MODEL)
        self.assertIn("<|im_start|>", shown.template)
        self.assertEqual(shown.modelinfo["general.architecture"], "llama")
        self.assertEqual(shown.modelinfo["llama.context_length"], 8192)
        self.assertEqual(shown.modelinfo["llama.embedding_length"], 576)
        self.assertIn("completion", shown.capabilities)
        self.assertNotIn("thinking", shown.capabilities)
        self.assertIn("num_ctx", shown.parameters)

    def test_ps_lists_the_loaded_model(self):
        running = CLIENT.ps().models
        self.assertEqual([m.model for m in running], [MODEL])
        self.assertEqual(running[0].size_vram, 0)
        self.assertIsNotNone(running[0].expires_at)


class Generate(unittest.TestCase):
    def test_generate_whole_and_streamed_agree(self):
        kwargs = dict(model=MODEL, prompt="Write a sentence about the sea.", options=GREEDY)
        whole = CLIENT.generate(**kwargs)
        self.assertTrue(whole.done)
        self.assertIn(whole.done_reason, ("stop", "length"))
        self.assertTrue(whole.response)
        self.assertLessEqual(whole.eval_count, 24)
        self.assertGreater(whole.prompt_eval_count, 0)
        self.assertGreater(whole.total_duration, 0)
        parts = list(CLIENT.generate(stream=True, **kwargs))
        self.assertTrue(all(not p.done for p in parts[:-1]))
        self.assertTrue(parts[-1].done)
        self.assertEqual("".join(p.response for p in parts), whole.response)
        self.assertEqual(parts[-1].done_reason, whole.done_reason)
        self.assertEqual(parts[-1].eval_count, whole.eval_count)

    def test_raw_generate_stops_at_num_predict(self):
        r = CLIENT.generate(
            model=MODEL, prompt="Once upon a time", raw=True,
            options={"temperature": 0, "num_predict": 5},
        )
        self.assertEqual(r.done_reason, "length")
        self.assertEqual(r.eval_count, 5)


class Chat(unittest.TestCase):
    def test_chat_streamed_equals_whole(self):
        kwargs = dict(model=MODEL, messages=ask("Name three animals."), options=GREEDY)
        whole = CLIENT.chat(**kwargs)
        self.assertEqual(whole.message.role, "assistant")
        self.assertTrue(whole.message.content)
        parts = list(CLIENT.chat(stream=True, **kwargs))
        self.assertEqual("".join(p.message.content for p in parts), whole.message.content)
        self.assertTrue(parts[-1].done)
        self.assertEqual(parts[-1].done_reason, whole.done_reason)

    def test_greedy_chat_equals_chat_completions(self):
        messages = [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Name three colors."},
        ]
        want = openai.OpenAI(base_url=BASE_URL, api_key=API_KEY).chat.completions.create(
            model=MODEL, messages=messages, temperature=0, max_tokens=24
        )
        got = CLIENT.chat(model=MODEL, messages=messages, options=GREEDY)
        self.assertTrue(got.message.content)
        self.assertEqual(got.message.content, want.choices[0].message.content)
        self.assertEqual(got.done_reason, want.choices[0].finish_reason)
        self.assertEqual(got.prompt_eval_count, want.usage.prompt_tokens)
        self.assertEqual(got.eval_count, want.usage.completion_tokens)
        streamed = "".join(
            p.message.content
            for p in CLIENT.chat(model=MODEL, messages=messages, options=GREEDY, stream=True)
        )
        self.assertEqual(streamed, got.message.content)

    def test_chat_with_a_schema_format_gives_valid_json(self):
        schema = {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 20},
                "age": {"type": "integer", "minimum": 0, "maximum": 150},
            },
            "required": ["name", "age"],
            "additionalProperties": False,
        }
        r = CLIENT.chat(
            model=MODEL, messages=ask("Describe a person as JSON."), format=schema,
            options={"temperature": 0, "num_predict": 100},
        )
        self.assertEqual(r.done_reason, "stop")
        jsonschema.validate(json.loads(r.message.content), schema)


class Errors(unittest.TestCase):
    def assert_status(self, status, call):
        with self.assertRaises(ollama.ResponseError) as caught:
            call()
        self.assertEqual(caught.exception.status_code, status)
        self.assertTrue(caught.exception.error)
        return caught.exception

    def test_unknown_model_is_404(self):
        err = self.assert_status(404, lambda: CLIENT.chat(model="llama3.2", messages=ask("hi")))
        self.assertIn("llama3.2", err.error)
        self.assert_status(404, lambda: CLIENT.show("llama3.2"))

    def test_bad_options_images_and_key(self):
        self.assert_status(
            400, lambda: CLIENT.generate(model=MODEL, prompt="hi", options={"num_predict": 0})
        )
        self.assert_status(
            400, lambda: CLIENT.generate(model=MODEL, prompt="hi", images=[b"\x89PNG"])
        )
        self.assert_status(401, lambda: client("wrong-key").list())
        # A streamed request is refused before its first line.
        self.assert_status(
            400, lambda: list(CLIENT.generate(model=MODEL, prompt="hi", think=True, stream=True))
        )

    def test_pull_is_refused(self):
        err = self.assert_status(501, lambda: CLIENT.pull("llama3.2"))
        self.assertIn(MODEL, err.error)


if __name__ == "__main__":
    unittest.main()

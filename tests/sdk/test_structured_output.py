"""Structured output through the official `openai` SDK against a running `wazn serve`.

A corpus of JSON schemas (tests/sdk/schemas/, one file per schema: where it came from, what
it covers, the schema and an instance it accepts) drawn from the JSON Schema Test Suite and
JSONSchemaBench, each asked for as response_format json_schema and the answer checked with
the `jsonschema` package; json_object; vLLM's structured_outputs (regex, choice, Lark
grammar) on chat and on completions; tools with tool_choice, streamed and whole; and the
400s for what cannot be compiled. The default model is tiny: only the grammar makes its
answers valid, which is what is tested.

The corpus was put together knowing how the default model behaves (schemas on which a
simulation of it looped past 256 tokens were left out, and untyped test-suite groups given the
type their keyword applies to), so its pass rate is a regression check, not a fair figure:
bench/structured-validity measures one on a corpus chosen by a rule fixed in advance.

Run by scripts/test-sdk (environment as in test_openai_sdk.py). By hand:

    .venv-sdk/bin/python -m unittest discover -s tests/sdk -v -k structured
"""

import concurrent.futures
import glob
import json
import os
import re
import unittest

import jsonschema
import openai
from jsonschema.validators import validator_for

BASE_URL = os.environ["WAZN_BASE_URL"]
API_KEY = os.environ["WAZN_API_KEY"]
MODEL = os.environ["WAZN_MODEL"]

SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemas")
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
# Formats are checked with the 2020-12 checker whatever draft a schema declares: the older
# drafts' checkers know fewer formats (draft 4 has no date, time or uuid, draft 7 no uuid)
# and would pass any string for them. date-time and time need rfc3339-validator.
FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER
CHECKED_FORMATS = {"date", "date-time", "time", "email", "uuid", "ipv4"}
# The server runs 4 sequences at once (scripts/test-sdk: --max-concurrent 4).
PARALLEL = 4


def client():
    # No retries: a test must see the first answer; bounded time per request.
    return openai.OpenAI(base_url=BASE_URL, api_key=API_KEY, max_retries=0, timeout=120)


def ask(content):
    return [{"role": "user", "content": content}]


def load_corpus():
    entries = []
    for path in sorted(glob.glob(os.path.join(SCHEMA_DIR, "*.json"))):
        with open(path, encoding="utf-8") as f:
            entries.append((os.path.splitext(os.path.basename(path))[0], json.load(f)))
    return entries


def validator(entry):
    """The validator of the draft the schema declares (2020-12, or the file's `dialect`, when
    it declares none), checking formats."""
    schema = entry["schema"]
    default = validator_for({"$schema": entry.get("dialect", DRAFT_2020_12)})
    cls = validator_for(schema, default=default)
    cls.check_schema(schema)
    return cls(schema, format_checker=FORMATS)


def errors(v, instance):
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in v.iter_errors(instance)]


def response_format(name, schema):
    return {"type": "json_schema", "json_schema": {"name": name[:64], "schema": schema, "strict": True}}


def short(text, n=300):
    text = repr(text)
    return text if len(text) <= n else text[:n] + "..."


class Corpus(unittest.TestCase):
    def test_corpus_is_sound(self):
        # Needs no server: the corpus itself, and a format checker that really checks.
        missing = CHECKED_FORMATS - set(FORMATS.checkers)
        self.assertFalse(missing, f"jsonschema does not check these formats: {missing}")
        corpus = load_corpus()
        self.assertGreaterEqual(len(corpus), 60)
        for name, entry in corpus:
            with self.subTest(name):
                for key in ("repository", "commit", "path", "description"):
                    self.assertTrue(entry["source"].get(key), key)
                self.assertEqual(errors(validator(entry), entry["example"]), [])

    def test_every_schema(self):
        """Every answer that ends by itself validates. An answer cut off at max_tokens (the
        tiny model can loop inside a string the schema leaves unbounded) is counted and
        printed, not failed: the grammar keeps every token valid, not the model brief;
        bench/structured-validity measures how often that happens on an unbiased sample."""
        corpus = load_corpus()

        def one(item):
            name, entry = item
            v = validator(entry)
            try:
                r = client().chat.completions.create(
                    model=MODEL,
                    messages=ask(
                        "Reply with a short example of a JSON value valid under this JSON schema:\n"
                        + json.dumps(entry["schema"])
                    ),
                    response_format=response_format(name, entry["schema"]),
                    temperature=0,
                    max_tokens=256,
                )
            except openai.APIError as e:
                return "failed", f"{name}: request failed: {e}"
            choice = r.choices[0]
            content = choice.message.content
            if choice.finish_reason == "length":
                return "truncated", f"{name}: cut off at max_tokens: {short(content)}"
            if choice.finish_reason != "stop":
                return "failed", f"{name}: finish_reason {choice.finish_reason}: {short(content)}"
            try:
                value = json.loads(content)
            except (TypeError, ValueError) as e:
                return "failed", f"{name}: finished but not JSON ({e}): {short(content)}"
            found = errors(v, value)
            if found:
                return "failed", f"{name}: invalid: {'; '.join(found)[:300]}: {short(content)}"
            return "valid", None

        with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
            outcomes = list(pool.map(one, corpus))
        failures = [text for kind, text in outcomes if kind == "failed"]
        truncated = [text for kind, text in outcomes if kind == "truncated"]
        n_valid = sum(kind == "valid" for kind, _ in outcomes)
        print(f"\nschemas: {n_valid} of {len(corpus)} valid, {len(truncated)} cut off at max_tokens")
        for text in truncated:
            print("  " + text)
        if failures:
            self.fail(f"{len(failures)} of {len(corpus)} schemas failed:\n" + "\n".join(failures))


class JsonObject(unittest.TestCase):
    def test_json_object(self):
        r = client().chat.completions.create(
            model=MODEL,
            messages=ask('Describe a cat named Tom, aged 3, as a JSON object with the keys "name" and "age".'),
            response_format={"type": "json_object"},
            temperature=0,
            max_tokens=256,
        )
        content = r.choices[0].message.content
        self.assertIsInstance(json.loads(content), dict, content)


class StructuredOutputs(unittest.TestCase):
    """vLLM's `structured_outputs`, which the SDK passes through as extra_body."""

    # The server reads \d as an ASCII digit (as JSON Schema patterns do); Python's re would
    # also take other scripts' digits, so the answer is checked against [0-9].
    PHONE = r"\d{3}-\d{4}"
    PHONE_ASCII = r"[0-9]{3}-[0-9]{4}"
    CHOICES = ["positive", "negative", "neutral"]
    LARK = "\n".join([
        'start: greeting " " name "!"',
        'greeting: "Hello" | "Hi"',
        "name: /[A-Z][a-z]{1,8}/",
    ])
    LARK_MATCH = r"(Hello|Hi) [A-Z][a-z]{1,8}!"

    def chat(self, structured, content, max_tokens=64):
        r = client().chat.completions.create(
            model=MODEL, messages=ask(content), temperature=0, max_tokens=max_tokens,
            extra_body={"structured_outputs": structured},
        )
        return r.choices[0].message.content

    def complete(self, structured, prompt, max_tokens=64):
        r = client().completions.create(
            model=MODEL, prompt=prompt, temperature=0, max_tokens=max_tokens,
            extra_body={"structured_outputs": structured},
        )
        return r.choices[0].text

    def test_regex(self):
        text = self.chat({"regex": self.PHONE}, "Make up a phone number.")
        self.assertIsNotNone(re.fullmatch(self.PHONE_ASCII, text), text)
        text = self.complete({"regex": self.PHONE}, "Call me at ")
        self.assertIsNotNone(re.fullmatch(self.PHONE_ASCII, text), text)

    def test_choice(self):
        text = self.chat({"choice": self.CHOICES}, "Is 'I love this film' positive, negative or neutral?")
        self.assertIn(text, self.CHOICES)
        text = self.complete({"choice": self.CHOICES}, "The review 'What a waste of time' is")
        self.assertIn(text, self.CHOICES)

    def test_lark_grammar(self):
        text = self.chat({"grammar": self.LARK}, "Greet someone.")
        self.assertIsNotNone(re.fullmatch(self.LARK_MATCH, text), text)
        text = self.complete({"grammar": self.LARK}, "A greeting:")
        self.assertIsNotNone(re.fullmatch(self.LARK_MATCH, text), text)


def corpus_entry(name):
    with open(os.path.join(SCHEMA_DIR, name + ".json"), encoding="utf-8") as f:
        return json.load(f)


# Two functions whose parameters are closed schemas of the corpus (from JSONSchemaBench), so
# that the grammar bounds the arguments.
TOOL_SCHEMAS = {
    "schedule_pickup": corpus_entry("bench-github-easy-o61080")["schema"],
    "report_status": corpus_entry("bench-github-easy-o43993")["schema"],
}
TOOLS = [
    {
        "type": "function",
        "function": {"name": "schedule_pickup", "description": "Schedule a parcel pickup with a carrier",
                     "parameters": TOOL_SCHEMAS["schedule_pickup"]},
    },
    {
        "type": "function",
        "function": {"name": "report_status", "description": "Report the status of a charging station connector",
                     "parameters": TOOL_SCHEMAS["report_status"]},
    },
]
TOOL_QUESTION = ask("Schedule a DHL pickup for the first of May 2024.")


class Tools(unittest.TestCase):
    def create(self, **kwargs):
        # Room for a few calls where parallel calls are allowed.
        args = dict(model=MODEL, messages=TOOL_QUESTION, tools=TOOLS, temperature=0, max_tokens=512)
        args.update(kwargs)
        return client().chat.completions.create(**args)

    def check_calls(self, choice, names):
        self.assertEqual(choice.finish_reason, "tool_calls")
        calls = choice.message.tool_calls
        self.assertTrue(calls, choice.message)
        for call in calls:
            self.assertEqual(call.type, "function")
            self.assertTrue(call.id)
            self.assertIn(call.function.name, names)
            args = json.loads(call.function.arguments)
            v = validator({"schema": TOOL_SCHEMAS[call.function.name]})
            self.assertEqual(errors(v, args), [], call.function.arguments)
        return calls

    def test_required(self):
        r = self.create(tool_choice="required")
        self.check_calls(r.choices[0], list(TOOL_SCHEMAS))

    def test_named(self):
        named = {"type": "function", "function": {"name": "report_status"}}
        r = self.create(tool_choice=named)
        self.check_calls(r.choices[0], ["report_status"])

    def test_not_parallel(self):
        r = self.create(tool_choice="required", parallel_tool_calls=False)
        self.assertEqual(len(self.check_calls(r.choices[0], list(TOOL_SCHEMAS))), 1)

    def test_streamed_equals_whole(self):
        whole = self.create(tool_choice="required")
        calls = self.check_calls(whole.choices[0], list(TOOL_SCHEMAS))
        streamed, finish = {}, None
        for chunk in self.create(tool_choice="required", stream=True):
            for c in chunk.choices:
                finish = c.finish_reason or finish
                for d in c.delta.tool_calls or []:
                    name, arguments = streamed.get(d.index, ("", ""))
                    if d.function is not None:
                        name += d.function.name or ""
                        arguments += d.function.arguments or ""
                    streamed[d.index] = (name, arguments)
        self.assertEqual(finish, "tool_calls")
        self.assertEqual(
            [streamed[i] for i in sorted(streamed)],
            [(c.function.name, c.function.arguments) for c in calls],
        )


class BadInput(unittest.TestCase):
    """What cannot be compiled is a 400 in OpenAI's error shape, and the server stays up."""

    def assert_400(self, create):
        with self.assertRaises(openai.BadRequestError) as e:
            create()
        self.assertEqual(e.exception.status_code, 400)
        body = e.exception.body
        self.assertIsInstance(body, dict, e.exception)
        for key in ("message", "type", "param", "code"):
            self.assertIn(key, body)
        self.assertTrue(body["message"])
        # The server still answers.
        r = client().chat.completions.create(model=MODEL, messages=ask("Say hi."), max_tokens=4, temperature=0)
        self.assertTrue(r.choices[0].message.content)
        return e.exception

    def chat(self, **kwargs):
        return lambda: client().chat.completions.create(model=MODEL, messages=ask("hi"), max_tokens=8, **kwargs)

    def test_invalid_schema(self):
        for schema in (
            {"type": "object", "properties": {"a": {"type": "no-such-type"}}},
            {"$ref": "#/nope"},
        ):
            with self.subTest(schema=schema):
                self.assert_400(self.chat(response_format=response_format("bad", schema)))

    def test_grammar_that_does_not_compile(self):
        self.assert_400(self.chat(extra_body={"structured_outputs": {"grammar": "start: undefined_rule\n"}}))
        self.assert_400(self.chat(extra_body={"structured_outputs": {"regex": "("}}))
        self.assert_400(lambda: client().completions.create(
            model=MODEL, prompt="hi", max_tokens=8, extra_body={"structured_outputs": {"grammar": 'start: "a" (\n'}}
        ))

    def test_unknown_tool(self):
        self.assert_400(self.chat(
            tools=TOOLS, tool_choice={"type": "function", "function": {"name": "no_such_tool"}}
        ))

    def test_unknown_response_format(self):
        self.assert_400(self.chat(response_format={"type": "no-such-format"}))


if __name__ == "__main__":
    unittest.main()

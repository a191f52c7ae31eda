"""The official `anthropic` Python SDK against a running `wazn serve` (the Messages API).

Run by scripts/test-sdk, which starts the server on a free loopback port and sets
WAZN_BASE_URL (e.g. http://127.0.0.1:PORT/v1), WAZN_API_KEY and WAZN_MODEL. The anthropic
client adds `/v1/messages` itself, so its base URL is the server's root.
"""

import json
import os
import unittest

import anthropic
import openai

OPENAI_BASE_URL = os.environ["WAZN_BASE_URL"]
BASE_URL = OPENAI_BASE_URL.rstrip("/").removesuffix("/v1")
API_KEY = os.environ["WAZN_API_KEY"]
MODEL = os.environ["WAZN_MODEL"]

WEATHER = {
    "name": "get_weather",
    "description": "The current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 24}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


# The pinned SDK's `create` names no sampling settings, so greedy decoding is asked for as an
# extra field of the body, which wazn reads as the Messages API defines it.
GREEDY = {"extra_body": {"temperature": 0}}


def client(api_key=API_KEY):
    # No retries: a test must see the first answer; bounded time per request.
    return anthropic.Anthropic(base_url=BASE_URL, api_key=api_key, max_retries=0, timeout=120)


def ask(content):
    return [{"role": "user", "content": content}]


class Messages(unittest.TestCase):
    def test_a_whole_message(self):
        r = client().messages.create(
            model=MODEL, max_tokens=16, **GREEDY, system="Answer briefly.",
            messages=ask("What is the capital of France?"),
        )
        self.assertEqual(r.type, "message")
        self.assertEqual(r.role, "assistant")
        self.assertEqual(r.model, MODEL)
        self.assertTrue(r.id.startswith("msg_"))
        self.assertEqual([b.type for b in r.content], ["text"])
        self.assertTrue(r.content[0].text)
        self.assertIn(r.stop_reason, ("end_turn", "max_tokens"))
        self.assertIsNone(r.stop_sequence)
        self.assertGreater(r.usage.input_tokens, 0)
        self.assertLessEqual(r.usage.output_tokens, 16)

    def test_a_greedy_answer_is_the_chat_completion(self):
        question = "What is the capital of France?"
        r = client().messages.create(
            model=MODEL, max_tokens=24, **GREEDY, system="Answer briefly.",
            messages=ask(question),
        )
        chat = openai.OpenAI(
            base_url=OPENAI_BASE_URL, api_key=API_KEY, max_retries=0, timeout=120
        ).chat.completions.create(
            model=MODEL, max_tokens=24, temperature=0,
            messages=[
                {"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": question},
            ],
        )
        self.assertEqual([b.type for b in r.content], ["text"])
        self.assertEqual(r.content[0].text, chat.choices[0].message.content)
        self.assertEqual(r.usage.input_tokens, chat.usage.prompt_tokens)
        self.assertEqual(r.usage.output_tokens, chat.usage.completion_tokens)
        want = "max_tokens" if chat.choices[0].finish_reason == "length" else "end_turn"
        self.assertEqual(r.stop_reason, want)

    def test_a_streamed_message_is_the_whole_one(self):
        kwargs = dict(model=MODEL, max_tokens=24, **GREEDY, messages=ask("Name three animals."))
        whole = client().messages.create(**kwargs)
        with client().messages.stream(**kwargs) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        self.assertEqual(text, whole.content[0].text)
        self.assertEqual(
            final.model_dump(exclude={"id"}), whole.model_dump(exclude={"id"})
        )
        self.assertNotEqual(final.id, whole.id)

    def test_a_stop_sequence_is_reported(self):
        kwargs = dict(model=MODEL, max_tokens=32, **GREEDY, messages=ask("Write a poem about rain."))
        free = client().messages.create(**kwargs)
        text = free.content[0].text
        self.assertGreater(len(text), 10, text)
        stop = text[6:9]
        stopped = client().messages.create(stop_sequences=[stop], **kwargs)
        self.assertEqual(stopped.stop_reason, "stop_sequence")
        self.assertEqual(stopped.stop_sequence, stop)
        self.assertEqual(stopped.content[0].text, text[: text.index(stop)])

    def test_a_forced_tool_call_and_its_result(self):
        question = ask("What is the weather in Paris?")
        r = client().messages.create(
            model=MODEL, max_tokens=64, **GREEDY, messages=question, tools=[WEATHER],
            tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        )
        self.assertEqual(r.stop_reason, "tool_use")
        uses = [b for b in r.content if b.type == "tool_use"]
        self.assertEqual(len(uses), 1)
        call = uses[0]
        self.assertEqual(call.name, "get_weather")
        self.assertTrue(call.id.startswith("toolu_"))
        self.assertIsInstance(call.input, dict)
        self.assertIsInstance(call.input.get("city"), str)

        # Streamed, the call is the same block, its input put together from input_json_delta.
        with client().messages.stream(
            model=MODEL, max_tokens=64, **GREEDY, messages=question, tools=[WEATHER],
            tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        ) as stream:
            final = stream.get_final_message()
        self.assertEqual(final.stop_reason, "tool_use")
        self.assertEqual(
            [b.model_dump(exclude={"id"}) for b in final.content],
            [b.model_dump(exclude={"id"}) for b in r.content],
        )

        conversation = question + [
            {"role": "assistant", "content": r.content},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": "18 C and sunny"},
            ]},
        ]
        done = client().messages.create(
            model=MODEL, max_tokens=32, **GREEDY, messages=conversation, tools=[WEATHER],
            tool_choice={"type": "none"},
        )
        self.assertIn(done.stop_reason, ("end_turn", "max_tokens"))
        self.assertEqual([b.type for b in done.content], ["text"])
        self.assertTrue(done.content[0].text)
        def count(messages):
            return client().messages.count_tokens(
                model=MODEL, messages=messages, tools=[WEATHER], tool_choice={"type": "none"}
            ).input_tokens

        self.assertEqual(count(conversation), done.usage.input_tokens)
        # The result is in the prompt: a longer result makes a longer prompt. (With
        # tool_choice none the tools themselves are left out, as in chat completions.)
        longer = conversation[:2] + [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call.id,
             "content": "18 C and sunny, with a light wind from the west"},
        ]}]
        self.assertGreater(count(longer), count(conversation))
        self.assertGreater(count(conversation), count(question))

    def test_an_output_format_holds_the_text_to_its_schema(self):
        schema = {
            "type": "object",
            "properties": {"capital": {"type": "string", "maxLength": 16}},
            "required": ["capital"],
            "additionalProperties": False,
        }
        r = client().messages.create(
            model=MODEL, max_tokens=40, **GREEDY,
            messages=ask("What is the capital of France? Answer in JSON."),
            output_config={"format": {"type": "json_schema", "schema": schema}},
        )
        self.assertEqual(r.stop_reason, "end_turn")
        answer = json.loads(r.content[0].text)
        self.assertEqual(list(answer), ["capital"])
        self.assertIsInstance(answer["capital"], str)

    def test_count_tokens_is_the_prompt_of_the_answer(self):
        kwargs = dict(model=MODEL, system="Answer briefly.", messages=ask("Say hello."))
        answer = client().messages.create(max_tokens=4, **kwargs)
        counted = client().messages.count_tokens(**kwargs)
        self.assertEqual(counted.input_tokens, answer.usage.input_tokens)


class Errors(unittest.TestCase):
    def test_a_bad_request(self):
        with self.assertRaises(anthropic.BadRequestError) as caught:
            client().messages.create(model=MODEL, max_tokens=0, messages=ask("hi"))
        self.assertEqual(caught.exception.status_code, 400)
        self.assertEqual(caught.exception.body["error"]["type"], "invalid_request_error")
        self.assertIn("max_tokens", caught.exception.body["error"]["message"])
        with self.assertRaises(anthropic.BadRequestError):
            client().messages.create(
                model=MODEL, max_tokens=8, messages=[{"role": "user", "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                ]}],
            )

    def test_a_wrong_key(self):
        with self.assertRaises(anthropic.AuthenticationError):
            client(api_key="wrong-key").messages.create(model=MODEL, max_tokens=4, messages=ask("hi"))

    def test_an_unknown_model(self):
        with self.assertRaises(anthropic.NotFoundError):
            client().messages.create(model="no-such-model", max_tokens=4, messages=ask("hi"))
        with self.assertRaises(anthropic.NotFoundError):
            with client().messages.stream(
                model="no-such-model", max_tokens=4, messages=ask("hi")
            ) as stream:
                stream.get_final_message()


if __name__ == "__main__":
    unittest.main()

"""The official `openai` Python SDK's Responses API (`client.responses`) against `wazn serve`.

Run by scripts/test-sdk (see test_openai_sdk.py for the environment it sets).
"""

import json
import os
import unittest

import openai

BASE_URL = os.environ["WAZN_BASE_URL"]
API_KEY = os.environ["WAZN_API_KEY"]
MODEL = os.environ["WAZN_MODEL"]

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 24}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


def client(api_key=API_KEY):
    return openai.OpenAI(base_url=BASE_URL, api_key=api_key, max_retries=0, timeout=120)


class Responses(unittest.TestCase):
    def test_whole_answer_equals_chat_completions(self):
        question = "What is the capital of France?"
        r = client().responses.create(
            model=MODEL,
            instructions="Answer briefly.",
            input=question,
            max_output_tokens=24,
            temperature=0,
        )
        chat = client().chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": question},
            ],
            max_tokens=24,
            temperature=0,
        )
        self.assertEqual(r.object, "response")
        self.assertEqual(r.model, MODEL)
        self.assertEqual(r.output_text, chat.choices[0].message.content)
        self.assertEqual(r.usage.input_tokens, chat.usage.prompt_tokens)
        self.assertEqual(r.usage.output_tokens, chat.usage.completion_tokens)
        want = "incomplete" if chat.choices[0].finish_reason == "length" else "completed"
        self.assertEqual(r.status, want)

    def test_streamed_answer_equals_whole(self):
        kwargs = dict(model=MODEL, input="Say hello.", max_output_tokens=64, temperature=0)
        whole = client().responses.create(**kwargs)
        self.assertEqual(whole.status, "completed", whole)
        with client().responses.stream(**kwargs) as stream:
            deltas = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
            final = stream.get_final_response()
        self.assertEqual(deltas, whole.output_text)
        self.assertEqual(final.output_text, whole.output_text)
        self.assertEqual(final.usage.output_tokens, whole.usage.output_tokens)
        # The raw stream of a cut answer ends with response.incomplete.
        events = list(client().responses.create(stream=True, **{**kwargs, "max_output_tokens": 2}))
        self.assertEqual(events[0].type, "response.created")
        self.assertEqual(events[-1].type, "response.incomplete")
        self.assertEqual(events[-1].response.incomplete_details.reason, "max_output_tokens")

    def test_function_call_round_trip(self):
        first_input = [{"role": "user", "content": "What is the weather in Paris?"}]
        kwargs = dict(
            model=MODEL,
            tools=[WEATHER, {"type": "web_search"}],
            tool_choice={"type": "function", "name": "get_weather"},
            parallel_tool_calls=False,
            max_output_tokens=64,
            temperature=0,
        )
        r = client().responses.create(input=first_input, **kwargs)
        calls = [item for item in r.output if item.type == "function_call"]
        self.assertEqual(len(calls), 1, r.output)
        call = calls[0]
        self.assertEqual(call.name, "get_weather")
        self.assertIsInstance(json.loads(call.arguments)["city"], str)

        # Streamed, the same call.
        with client().responses.stream(input=first_input, **kwargs) as stream:
            arguments = "".join(
                e.delta for e in stream if e.type == "response.function_call_arguments.delta"
            )
            final = stream.get_final_response()
        self.assertEqual(arguments, call.arguments)
        self.assertEqual([i.type for i in final.output], [i.type for i in r.output])

        # The result goes back with the whole conversation (as stateless clients do) ...
        output = {"type": "function_call_output", "call_id": call.call_id, "output": '{"celsius": 21}'}
        stateless = client().responses.create(
            model=MODEL,
            input=first_input + [item.model_dump(exclude_none=True) for item in r.output] + [output],
            tools=[WEATHER],
            max_output_tokens=24,
            temperature=0,
            store=False,
        )
        self.assertIn(stateless.status, ("completed", "incomplete"))
        self.assertTrue(stateless.output_text)
        # ... or after previous_response_id, with the same answer.
        stateful = client().responses.create(
            model=MODEL,
            previous_response_id=r.id,
            input=[output],
            tools=[WEATHER],
            max_output_tokens=24,
            temperature=0,
        )
        self.assertEqual(stateful.output_text, stateless.output_text)
        self.assertEqual(stateful.previous_response_id, r.id)

    def test_json_schema_output(self):
        schema = {
            "type": "object",
            "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
            "required": ["name", "age"],
            "additionalProperties": False,
        }
        r = client().responses.create(
            model=MODEL,
            input="Invent a person.",
            text={"format": {"type": "json_schema", "name": "person", "schema": schema, "strict": True}},
            max_output_tokens=64,
            temperature=0,
        )
        self.assertEqual(r.status, "completed", r)
        person = json.loads(r.output_text)
        self.assertEqual(set(person), {"name", "age"})
        self.assertIsInstance(person["age"], int)


class ResponsesErrors(unittest.TestCase):
    def test_bad_request(self):
        with self.assertRaises(openai.BadRequestError):
            client().responses.create(model=MODEL, input=[{"type": "item_reference", "id": "x"}])
        with self.assertRaises(openai.BadRequestError):
            client().responses.create(model=MODEL, input="hi", max_output_tokens=0)

    def test_not_found(self):
        with self.assertRaises(openai.NotFoundError):
            client().responses.create(model="no-such-model", input="hi")
        with self.assertRaises(openai.NotFoundError):
            client().responses.create(model=MODEL, input="hi", previous_response_id="resp_missing")

    def test_authentication(self):
        with self.assertRaises(openai.AuthenticationError):
            client(api_key="wrong-key").responses.create(model=MODEL, input="hi")


if __name__ == "__main__":
    unittest.main()

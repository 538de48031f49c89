"""Tests of the Python SDK: python3 -m unittest discover -s sdk/python/tests"""

import dataclasses
import os
import sys
import typing
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from warden_sdk import InvocationError, PluginError, invoke, typed  # noqa: E402


@dataclasses.dataclass
class Address:
    city: str


@dataclasses.dataclass
class Event:
    name: str
    times: int = 1
    ratio: float = 1.0
    tags: typing.List[str] = dataclasses.field(default_factory=list)
    address: typing.Optional[Address] = None


@dataclasses.dataclass
class Result:
    message: str
    count: int


class TypedHandlers(unittest.TestCase):
    def test_events_become_dataclasses_and_results_json(self):
        @typed(Event)
        def handler(e: Event) -> Result:
            city = e.address.city if e.address else "nowhere"
            return Result(message=f"{e.name}@{city}" * e.times, count=len(e.tags))

        out = invoke(handler, {"name": "ada", "times": 2, "tags": ["a"], "address": {"city": "x"}, "ratio": 2})
        self.assertEqual(out, {"message": "ada@xada@x", "count": 1})

    def test_missing_unknown_and_mistyped_fields_are_clear(self):
        @typed(Event)
        def handler(e):
            return {}

        for event, words in [
            ({}, "missing required field name"),
            ({"name": "a", "nick": "b"}, "unknown field(s) nick"),
            ({"name": 3}, "event.name: expected str, got int"),
            ({"name": "a", "times": True}, "expected int, got bool"),
            ({"name": "a", "tags": "x"}, "expected a list"),
            ({"name": "a", "address": {"town": "y"}}, "unknown field(s) town"),
            ([], "expected an object"),
        ]:
            with self.assertRaises(InvocationError) as cm:
                invoke(handler, event)
            self.assertEqual(cm.exception.error_type, "InvalidEvent")
            self.assertIn(words, cm.exception.message)

    def test_async_handlers_are_awaited(self):
        @typed(Event)
        async def handler(e):
            return {"n": e.times}

        self.assertEqual(invoke(handler, {"name": "a", "times": 3}), {"n": 3})


class Errors(unittest.TestCase):
    def test_plugin_errors_carry_their_type(self):
        def handler(event):
            raise PluginError("ValidationError", "name is required")

        with self.assertRaises(InvocationError) as cm:
            invoke(handler, {})
        self.assertEqual(cm.exception.error_type, "ValidationError")
        self.assertEqual(cm.exception.message, "name is required")
        e = PluginError("QuotaExceeded", "too many")
        self.assertIsInstance(e, PluginError)
        self.assertEqual(type(e).__name__, "QuotaExceeded")
        self.assertIs(type(e), type(PluginError("QuotaExceeded", "again")))

    def test_subclasses_and_one_argument_form(self):
        class NotFound(PluginError):
            pass

        e = NotFound("no such user")
        self.assertEqual((type(e).__name__, str(e)), ("NotFound", "no such user"))
        self.assertEqual(str(PluginError("plain")), "plain")
        with self.assertRaises(ValueError):
            PluginError("not an identifier", "x")

    def test_results_must_be_json(self):
        with self.assertRaises(InvocationError) as cm:
            invoke(lambda e: {"s": {1, 2}}, {})
        self.assertEqual(cm.exception.error_type, "ResultNotSerializable")

    def test_nan_and_exit_are_reported_as_on_the_platform(self):
        with self.assertRaises(InvocationError) as cm:
            invoke(lambda e: {"x": float("nan")}, {})
        self.assertEqual(cm.exception.error_type, "ResultNotSerializable")

        def bye(event):
            raise SystemExit(3)

        with self.assertRaises(InvocationError) as cm:
            invoke(bye, {})
        self.assertEqual(cm.exception.error_type, "SystemExit")

    @unittest.skipIf(sys.version_info < (3, 10), "X | None needs Python 3.10")
    def test_pipe_unions_are_checked(self):
        ns = {}
        exec(
            "import dataclasses\n"
            "@dataclasses.dataclass\n"
            "class E:\n"
            "    n: int | None = None\n",
            ns,
        )

        @typed(ns["E"])
        def handler(e):
            return {"n": e.n}

        self.assertEqual(invoke(handler, {"n": 2}), {"n": 2})
        with self.assertRaises(InvocationError) as cm:
            invoke(handler, {"n": "two"})
        self.assertIn("expected int", cm.exception.message)

    def test_events_pass_through_json(self):
        seen = []
        invoke(lambda e: seen.append(e) or {}, {"t": (1, 2)})
        self.assertEqual(seen, [{"t": [1, 2]}])


class Request(unittest.TestCase):
    def test_no_network_and_bad_urls_are_clear(self):
        from warden_sdk import request
        saved = {k: os.environ.pop(k, None) for k in ("HTTP_PROXY", "http_proxy")}
        try:
            with self.assertRaises(PluginError) as e:
                request("http://example.com/")
            self.assertEqual(e.exception.error_type, "NetworkUnavailable")
            os.environ["HTTP_PROXY"] = "http://127.0.0.1:9"
            for bad in ("ftp://example.com/", "example.com/x", "http:///nohost"):
                with self.assertRaises(ValueError):
                    request(bad)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


if __name__ == "__main__":
    unittest.main()

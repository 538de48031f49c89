"""python3 -m unittest discover -s examples/plugins/csv-to-json (with sdk/python on PYTHONPATH)"""

import os
import sys
import unittest

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, "..", "..", "..", "sdk", "python"))

from warden_sdk import InvocationError, invoke  # noqa: E402

from main import handler  # noqa: E402

CSV = "name,age,member\nAda,36,yes\nBob,forty,no\nCy,7\n\nDee,,false\n"


class CsvToJson(unittest.TestCase):
    def test_types_and_reported_rows(self):
        out = invoke(handler, {"csv": CSV, "types": {"age": "integer", "member": "boolean"}})
        self.assertEqual(out["columns"], ["name", "age", "member"])
        self.assertEqual(out["records"], [
            {"name": "Ada", "age": 36, "member": True},
            {"name": "Dee", "age": None, "member": False},
        ])
        self.assertEqual(out["row_count"], 2)
        self.assertEqual(out["errors"], [
            {"line": 3, "column": "age", "message": "'forty' is not a integer"},
            {"line": 4, "message": "2 fields, the header has 3"},
        ])

    def test_strict_mode_fails_on_the_first_bad_row(self):
        with self.assertRaises(InvocationError) as cm:
            invoke(handler, {"csv": CSV, "types": {"age": "integer"}, "strict": True})
        self.assertEqual(cm.exception.error_type, "BadValue")
        self.assertIn("line 3", cm.exception.message)

    def test_delimiters_quotes_and_header_errors(self):
        out = invoke(handler, {"csv": 'a;b\n"x;1";2\n', "delimiter": ";", "types": {"b": "number"}})
        self.assertEqual(out["records"], [{"a": "x;1", "b": 2.0}])
        for event, kind in [
            ({"csv": ""}, "EmptyInput"),
            ({"csv": "a,a\n1,2\n"}, "BadHeader"),
            ({"csv": "a\n1\n", "types": {"z": "integer"}}, "UnknownColumn"),
            ({"csv": "a\n1\n", "limit": 3}, "InvalidEvent"),
        ]:
            with self.assertRaises(InvocationError) as cm:
                invoke(handler, event)
            self.assertEqual(cm.exception.error_type, kind)


if __name__ == "__main__":
    unittest.main()

"""Built-in graders; importing this package registers them."""

from graders.builtin import json_schema, math_answer, python_tests, text  # noqa: F401

"""Built-in graders; importing this package registers them."""

from graders.builtin import json_schema, math_answer, text  # noqa: F401
from graders.python_tests import grader as _python_tests  # noqa: F401

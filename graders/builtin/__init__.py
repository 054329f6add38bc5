"""Built-in graders; importing this package registers them."""

from graders.builtin import (  # noqa: F401
    json_schema,
    last_integer,
    math_answer,
    reasoning_gym_score,
    text,
)
from graders.python_tests import grader as _python_tests  # noqa: F401

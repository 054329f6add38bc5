"""Built-in graders; importing this package registers them. A grader with its own folder (graders/<name>/ with a
grader.py, e.g. graders/python_tests/) is found and registered here without being listed."""

import importlib
import pkgutil
from pathlib import Path

import graders
from graders.builtin import (  # noqa: F401
    json_schema,
    last_integer,
    math_answer,
    reasoning_gym_score,
    text,
)

for _folder in pkgutil.iter_modules(graders.__path__):
    if _folder.ispkg and (Path(graders.__path__[0]) / _folder.name / "grader.py").is_file():
        importlib.import_module(f"graders.{_folder.name}.grader")

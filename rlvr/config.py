"""Typed configs loaded from TOML with errors that name the file and the field.

Config classes are pydantic models with `extra="forbid"` (a typo is an error, not a silent default) and a
docstring per field (`use_attribute_docstrings`), so `rlvr ... --help` and the README can show them."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

T = TypeVar("T", bound=BaseModel)


class ConfigError(ValueError):
    """A config file is missing, not TOML, or does not match its schema."""


class StrictModel(BaseModel):
    """Base for all config sections: unknown keys are errors; field docstrings become descriptions."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid config"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(root)"
        lines.append(f"  {where}: {e['msg']}")
    return "\n".join(lines)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` → (["a","b","c"], value parsed as TOML when possible, else the raw string)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part} is not a table")
        node[path[-1]] = value
    return data


def load_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        with p.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None


def load_config(cls: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
    """Load `cls` from a TOML file (or defaults when path is None) plus `key=value` overrides."""
    data = load_toml(path) if path is not None else {}
    data = apply_overrides(data, overrides or [])
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, str(path) if path else "config")) from None


def field_help(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every field of a config model, nested sections included, as "name: type = default" followed by its
    docstring (indented): what `--help-config` prints."""
    lines: list[str] = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            lines += ["", f"[{prefix}{name}]", *(f"    {d}" for d in (info.description or "").splitlines())]
            lines += field_help(ann, f"{prefix}{name}.")
            continue
        default = info.get_default(call_default_factory=True)
        shown = default.model_dump() if isinstance(default, BaseModel) else default
        if isinstance(shown, list) and shown and isinstance(default[0], BaseModel):
            shown = [d.model_dump(exclude_defaults=True) for d in default]
        type_name = getattr(ann, "__name__", None) if isinstance(ann, type) else None
        lines.append(f"{prefix}{name}: {type_name or str(ann).replace('typing.', '')} = {shown!r}")
        lines += [f"    {d}" for d in (info.description or "(undocumented)").splitlines()]
    return lines

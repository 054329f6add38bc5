"""The GRPO loop: batches from the async pipeline, a policy update per step, a verified weight push.

One step at policy version v: take P graded groups whose samples are at most max_staleness versions old,
compute group-relative advantages, score the sampled tokens under the current policy (old log-probs are
taken before the first update; with num_iterations = 1 they are the detached current ones, as in TRL),
optionally under the reference model (beta > 0), back-propagate the clipped surrogate group by group
(gradient accumulation), clip, step AdamW and the schedule, push the weights (or LoRA adapter) to the
rollout service as version v + 1 and check the service reports it. A step with nothing to learn (every
group zero-variance, beta = 0) changes no weight, so it pushes nothing and the version stays: versions count
weight changes, and staleness is measured in them. Meanwhile the pipeline keeps generating
and grading the next groups. Checkpoints store the data cursor and the prompts still in flight, which a
resumed run re-queues first, so no prompt is skipped or repeated."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import threading
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from graders.client import GraderClient
from rollout.client import RolloutClient
from rollout.types import SamplingConfig
from trainer.checkpoint import TrainState, latest_checkpoint, load_checkpoint, save_checkpoint
from trainer.config import GRPOConfig
from trainer.data import DataError, Task, build_tasks
from trainer.evaluate import evaluate
from trainer.loss import compute_loss, group_advantages
from trainer.metrics import EVAL_FILE, RunLog, batch_metrics, truncate_history
from trainer.pipeline import GradeRetry, Group, RolloutOutage, RolloutPipeline, is_outage
from trainer.policy import Policy, check_qlora_supported, resolve_device, resolve_model_path
from trainer.rewards import check_task_fields, check_task_golds
from trainer.services import Services

log = logging.getLogger(__name__)
T = TypeVar("T")
ADAPTER_NAME = "policy"
CLIENT_RETRY_S = 10.0


class RunDirError(RuntimeError):
    """The run directory holds an earlier run and neither --resume nor a fresh directory was asked for."""


@dataclass
class RunSummary:
    run_dir: Path
    steps: int
    evals: list[dict[str, Any]] = field(default_factory=list)

    @property
    def first_eval(self) -> dict[str, Any] | None:
        return self.evals[0] if self.evals else None

    @property
    def last_eval(self) -> dict[str, Any] | None:
        return self.evals[-1] if self.evals else None


# ---------------------------------------------------------------------------------------------- the update


@dataclass
class GroupTensors:
    """One group ready for the loss: shared prompt, completions, advantages and engine log-probs."""

    prompt: list[int]
    completions: list[list[int]]
    advantages: torch.Tensor
    sampling_logps: torch.Tensor

    @property
    def tokens(self) -> int:
        return sum(len(c) for c in self.completions)


def _pad(rows: list[list[float]], width: int) -> torch.Tensor:
    out = torch.full((len(rows), width), float("nan"))
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r[:width], dtype=torch.float32)
    return out


def group_tensors(group: Group, scale_rewards: bool) -> GroupTensors:
    samples = group.samples
    prompt = samples[0].sample.prompt_token_ids
    if any(s.sample.prompt_token_ids != prompt for s in samples):
        raise RuntimeError(f"task {group.task.id}: samples of one group came back with different prompts")
    rewards = torch.tensor([[s.reward for s in samples]], dtype=torch.float32)
    width = max(max(len(s.sample.token_ids) for s in samples), 1)
    return GroupTensors(
        prompt=list(prompt),
        completions=[list(s.sample.token_ids) for s in samples],
        advantages=group_advantages(rewards, scale_rewards)[0],
        sampling_logps=_pad([s.sample.logprobs for s in samples], width),
    )


def _merge(acc: dict[str, float], stats: dict[str, float], weight: float) -> None:
    for k, v in stats.items():
        if isinstance(v, float) and math.isfinite(v):
            acc[k] = acc.get(k, 0.0) + v * weight
            acc[f"__w_{k}"] = acc.get(f"__w_{k}", 0.0) + weight


def _averaged(acc: dict[str, float]) -> dict[str, float]:
    return {f"loss/{k}": v / acc[f"__w_{k}"] for k, v in acc.items() if not k.startswith("__w_")}


class UpdateAborted(Exception):
    """The run is stopping: a policy update was abandoned between two groups."""


def policy_update(
    policy: Policy, optimizer: torch.optim.Optimizer, scheduler: Any, groups: list[Group], cfg: GRPOConfig,
    stop: threading.Event | None = None,
) -> dict[str, float]:  # fmt: skip
    """The optimizer update(s) of one step; returns loss statistics. Runs in a worker thread, which cannot be
    interrupted, so it checks `stop` between passes (Ctrl-C then ends a run within one pass: a group, or
    model.groups_per_pass groups in one padded batch)."""
    lc = cfg.loss
    temp = cfg.sampling.temperature
    batches = [group_tensors(g, lc.scale_rewards) for g in groups]
    zero = [bool((b.advantages == 0).all()) for b in batches]
    if lc.drop_zero_variance_groups:
        batches = [b for b, z in zip(batches, zero, strict=True) if not z]
    # The normalisers span the whole batch, skipped groups included, so skipping is exact (TRL's gradient over
    # the full batch, one group per micro-batch): dapo divides by every completion token of the step; grpo,
    # bnpo and dr_grpo average over every group (TRL's division by the gradient-accumulation steps).
    num_items = sum(b.tokens for b in batches)
    num_micro_batches = len(batches)
    # With beta = 0, a group whose advantages are all 0 contributes exactly 0 gradient: skip its passes. With
    # beta > 0 its KL term still has a gradient, so it is kept.
    active = [b for b in batches if lc.beta > 0 or not bool((b.advantages == 0).all())]
    stats: dict[str, float] = {"train/active_groups": float(len(active)), "train/tokens": 0.0}
    if not active:
        # Nothing to learn from: no optimizer step (the weights stay bit-identical, so nothing is pushed), but
        # the schedule still advances, so it ends at train.steps whatever the number of skipped steps.
        with warnings.catch_warnings():  # "scheduler stepped before the optimizer": intended here
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
            for _ in range(cfg.train.num_iterations):
                scheduler.step()
        stats["train/skipped_update"] = 1.0
        stats["train/lr"] = float(scheduler.get_last_lr()[0])
        return stats
    per_pass = policy.groups_per_pass
    passes = [active[i : i + per_pass] for i in range(0, len(active), per_pass)]
    old: list[torch.Tensor | None] = [None] * len(active)
    if cfg.train.num_iterations > 1:
        with torch.no_grad():
            old = [lp for chunk in passes for lp, _ in _logps(policy, chunk, temp)]
    refs: list[torch.Tensor | None] = [None] * len(active)
    if lc.beta > 0:
        with torch.no_grad(), policy.reference() as ref:
            refs = [lp for chunk in passes for lp, _ in _logps(policy, chunk, temp, ref)]
    acc: dict[str, float] = {}
    for _ in range(cfg.train.num_iterations):
        optimizer.zero_grad(set_to_none=True)
        done = 0
        for chunk in passes:
            if stop is not None and stop.is_set():
                optimizer.zero_grad(set_to_none=True)
                raise UpdateAborted
            losses = []
            for b, (logps, mask), old_lp, ref_lp in zip(chunk, _logps(policy, chunk, temp),
                                                        old[done : done + len(chunk)], refs[done : done + len(chunk)],
                                                        strict=True):  # fmt: skip
                out = compute_loss(
                    logps, logps.detach() if old_lp is None else old_lp, b.advantages, mask, lc,
                    ref_logps=ref_lp, sampling_logps=b.sampling_logps[:, : logps.shape[1]],
                    num_items_in_batch=num_items, num_micro_batches=num_micro_batches,
                )  # fmt: skip
                losses.append(out.loss)
                _merge(acc, out.stats, float(mask.sum()))
                stats["train/tokens"] += len(b.prompt) + b.tokens
            torch.stack(losses).sum().backward()
            done += len(chunk)
        params = policy.parameters()
        if cfg.optim.max_grad_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.max_grad_norm)
        else:
            norm = torch.norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
        _merge(acc, {"grad_norm": float(norm)}, 1.0)
        optimizer.step()
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    stats.update(_averaged(acc))
    stats["train/lr"] = float(scheduler.get_last_lr()[0])
    return stats


LogpsAndMask = tuple[torch.Tensor, torch.Tensor]


def _logps(policy: Policy, chunk: list[GroupTensors], temp: float, model: Any = None) -> list[LogpsAndMask]:
    """(log-probs, mask) of each group of one pass: a group alone with its shared prompt, or several in one
    padded batch (model.groups_per_pass)."""
    if len(chunk) == 1:
        return [policy.group_logps(chunk[0].prompt, chunk[0].completions, temp, model=model)]
    return policy.batch_logps([(b.prompt, b.completions) for b in chunk], temp, model=model)


def make_optimizer(policy: Policy, cfg: GRPOConfig) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW over the trainable (float32 for a full fine-tune) parameters and transformers' schedule, laid
    out over every optimizer update of the run (train.steps × num_iterations) so it ends where the run ends
    (the config refuses a decaying schedule with a time budget)."""
    from transformers import get_scheduler

    o = cfg.optim
    optimizer = torch.optim.AdamW(policy.parameters(), lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    name = {"constant": "constant_with_warmup" if o.warmup_steps else "constant"}.get(o.schedule, o.schedule)
    scheduler = get_scheduler(
        name, optimizer, num_warmup_steps=o.warmup_steps * cfg.train.num_iterations,
        num_training_steps=cfg.train.steps * cfg.train.num_iterations,
    )  # fmt: skip
    return optimizer, scheduler


# ---------------------------------------------------------------------------------------------- the run


def prepare_run_dir(cfg: GRPOConfig, resume: bool) -> tuple[Path, Path | None]:
    """(run_dir, checkpoint to resume from); refuses to mix a new run into an old run's files."""
    assert cfg.run_dir is not None
    run_dir = Path(cfg.run_dir)
    ckpt = latest_checkpoint(run_dir / "checkpoints")
    if resume and ckpt is None:
        log.warning("--resume: no checkpoint under %s; starting from step 0", run_dir / "checkpoints")
        truncate_history(run_dir, -1)
    has_history = (run_dir / "metrics.jsonl").is_file() or ckpt is not None
    if not resume and has_history:
        raise RunDirError(
            f"{run_dir} already holds a run (metrics.jsonl / checkpoints): pass --resume to continue it, or set "
            "run_dir to a new directory"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(cfg.model_dump_json(indent=1))
    return run_dir, ckpt if resume else None


class GRPOTrainer:
    """State and steps of one run; `run()` drives it (see the module docstring)."""

    def __init__(self, cfg: GRPOConfig, run_dir: Path, ckpt: Path | None, services: Services, policy: Policy) -> None:
        self.cfg, self.run_dir, self.services, self.policy = cfg, run_dir, services, policy
        self.optimizer, self.scheduler = make_optimizer(policy, cfg)
        self.stream, self.held_out = build_tasks(cfg.data)
        if cfg.eval.size is not None:
            self.held_out = self.held_out[: cfg.eval.size]
        self.state = TrainState()
        if ckpt is not None:
            self.state = load_checkpoint(ckpt, policy.model, self.optimizer, self.scheduler)
            self.stream.load_state_dict(self.state.data_state)
            truncate_history(run_dir, self.state.step)
        self.step = self.state.step
        self.last_saved_step, self.last_saved_at = self.step, time.monotonic()
        self.version = self.state.policy_version
        g = cfg.graders
        self.retry = GradeRetry(g.retries, g.backoff_s, g.timeout_s)
        # The client rides out short blips itself; past CLIENT_RETRY_S the loop takes over, pauses training
        # with a message and waits up to rollout.outage_timeout_s.
        self.rollout = RolloutClient(services.rollout_addresses, token=cfg.rollout.token, tls_ca=cfg.rollout.tls_ca,
                                     timeout_s=cfg.rollout.request_timeout_s, retry_s=CLIENT_RETRY_S)  # fmt: skip
        assert services.grader_address is not None
        self.grader = GraderClient(services.grader_address, token=g.token, tls_ca=g.tls_ca, timeout_s=g.timeout_s)
        self.runlog = RunLog(run_dir, total_steps=cfg.train.steps, start_step=self.step,
                             elapsed_offset=float(self.state.extra.get("elapsed_s", 0.0)),
                             eval_offset=float(self.state.extra.get("eval_s", 0.0)),
                             tensorboard=cfg.logging.tensorboard, progress=cfg.logging.progress,
                             max_time_s=cfg.train.max_time_s)  # fmt: skip
        self.evals: list[dict[str, Any]] = []

    def adapter(self, version: int) -> str | None:
        # LoRA runs name their adapter from version 0 on (pushed at start, B = 0): a server that merges adapters
        # into its weights cannot serve the base model beside it, so no request may fall back to "no adapter".
        return ADAPTER_NAME if self.policy.is_lora else None

    # ------------------------------------------------------------------ rollout sync and outages

    async def _push(self, version: int) -> None:
        behind = [i.address for i in await self.rollout.info() if i.policy_version < version - 1]
        if behind:
            self.runlog.note(f"rollout service {', '.join(behind)} lost its weights (restarted): re-syncing it to "
                             f"policy version {version}")  # fmt: skip
        if self.policy.is_lora:
            config, tensors = self.policy.adapter_state()
            got = await self.rollout.load_adapter(ADAPTER_NAME, config, tensors, version)
        else:
            got = await self.rollout.update_weights(self.policy.full_state(), version)
        if got != version:
            raise RuntimeError(f"rollout service reports policy version {got} after pushing {version}")

    async def _guarded(self, op: Callable[[], Awaitable[T]], what: str) -> T:
        """Run a rollout operation; while the service is down, pause (with a message) and retry."""
        while True:
            try:
                return await op()
            except Exception as e:
                if not is_outage(e):
                    raise
                await self._wait_for_rollout(what, e)

    async def _wait_for_rollout(self, what: str, err: Exception) -> None:
        t0 = time.monotonic()
        self.runlog.note(f"rollout service unreachable during {what} ({err}); training paused until it returns")
        while True:
            try:
                await self.rollout.wait_ready(timeout_s=10.0)
                break
            except Exception as e:
                if time.monotonic() - t0 > self.cfg.rollout.outage_timeout_s:
                    raise RolloutOutage(f"rollout service unreachable for {time.monotonic() - t0:.0f}s: {e}") from None
        self.runlog.note(f"rollout service back after {time.monotonic() - t0:.0f}s; resuming")
        if what == "weight push":
            return  # the caller retries the push, which re-syncs a restarted server
        restarted = await self.rollout.restarted()
        behind = [i.address for i in await self.rollout.info() if i.policy_version < self.version]
        if restarted or behind:
            await self.sync()

    async def sync(self) -> None:
        """Push the current weights as the current version (after a restart, or on resume)."""
        self.runlog.note(f"re-syncing the rollout service to policy version {self.version}")
        await self._guarded(lambda: self._push(self.version), "weight push")

    async def resync_if_behind(self) -> None:
        """The pipeline saw a restart: re-push unless a push since then already brought it up to date."""
        infos = await self._guarded(self.rollout.info, "info")
        if any(i.policy_version != self.version for i in infos):
            await self.sync()

    # ------------------------------------------------------------------ steps

    async def _check_tasks(self) -> None:
        """What the graders need, as the grader service says (ListGraders): every grader served, every task
        with its required fields, every gold answer accepted (DataError naming file:line otherwise)."""
        catalog = await self.grader.list_graders()
        cfg = self.cfg
        needs_sandbox = [g.name for g in catalog.graders if g.name in cfg.used_graders() and g.sandboxed]
        if needs_sandbox and catalog.sandbox_backend == "none":
            raise DataError(f"grader(s) {', '.join(needs_sandbox)} run programs, but the grader service at "
                            f"{self.grader.address} has no sandbox (start it with one)")  # fmt: skip
        check_task_fields([*self.stream.tasks, *self.held_out], cfg.rewards, catalog)
        t0 = time.monotonic()
        await check_task_golds(self.grader, [*self.stream.tasks, *self.held_out], cfg.rewards, catalog)
        if cfg.scorer is not None:
            held_out = [cfg.scorer.task_for(t) for t in self.held_out]
            check_task_fields(held_out, [cfg.scorer.as_reward()], catalog)
            await check_task_golds(self.grader, held_out, [cfg.scorer.as_reward()], catalog)
        log.info("task fields and gold answers checked by the grader service (%.1fs)", time.monotonic() - t0)

    async def _evaluate(self) -> None:
        t0 = time.monotonic()
        adapter = self.adapter(self.version)
        cfg = self.cfg
        sampling = SamplingConfig(n=1, temperature=0.0, max_tokens=cfg.eval.max_tokens or cfg.sampling.max_tokens,
                                  stop=list(cfg.sampling.stop))  # fmt: skip
        scorer = cfg.scorer
        assert scorer is not None  # set by config validation whenever the run evaluates
        report = await self._guarded(lambda: evaluate(
            self.held_out, self.rollout, self.grader, scorer, sampling, adapter=adapter,
            rewards=cfg.rewards if cfg.eval.rewards else (), retry=self.retry,
        ), "evaluation")  # fmt: skip
        metrics = report.metrics()
        metrics["time/eval_s"] = time.monotonic() - t0
        report.write_jsonl(self.run_dir / EVAL_FILE, self.step)
        self.evals.append(self.runlog.write("eval", self.step, metrics))
        if cfg.eval.examples:
            self.runlog.note(f"held-out examples at step {self.step} (prompt → answer → verdict by "
                             f"{report.scorer}):\n{report.examples(cfg.eval.examples)}")  # fmt: skip

    async def _checkpoint(self, pipeline: RolloutPipeline) -> None:
        t0 = time.monotonic()
        # Cursor and in-flight prompts are read at one instant (no await in between), so together they
        # account for every prompt taken from the stream and not yet trained on.
        state = TrainState(
            step=self.step, policy_version=self.version, data_state=self.stream.state_dict(),
            inflight_tasks=[t.to_dict() for t in pipeline.inflight_tasks()],
            samples_seen=self.state.samples_seen,
            extra={"elapsed_s": self.runlog.elapsed_s, "eval_s": self.runlog.eval_s, "saved_unix": time.time()},
        )  # fmt: skip
        await asyncio.to_thread(
            save_checkpoint, self.run_dir / "checkpoints", self.step, self.policy.model, self.optimizer,
            self.scheduler, state, self.cfg.checkpoint.keep_last, self.policy.tokenizer,
        )  # fmt: skip
        self.last_saved_step, self.last_saved_at = self.step, time.monotonic()
        self.runlog.note(f"checkpoint step {self.step} saved ({time.monotonic() - t0:.1f}s)")

    async def _train_step(self, pipeline: RolloutPipeline) -> None:
        t0 = time.monotonic()
        tokens0 = pipeline.gen_tokens
        groups, _ = await pipeline.next_batch(self.version, self.resync_if_behind)
        t1 = time.monotonic()
        stop = threading.Event()
        try:
            stats = await asyncio.to_thread(
                policy_update, self.policy, self.optimizer, self.scheduler, groups, self.cfg, stop
            )
        except asyncio.CancelledError:
            stop.set()
            raise
        t2 = time.monotonic()
        trained_on = self.version
        self.step += 1
        if stats.get("train/skipped_update"):
            # No group had a learning signal, so the weights did not change: the version (which names weights,
            # not steps) stays and nothing is pushed; the batch gives its launch slots back to the producer.
            await pipeline.batch_without_update(len(groups))
        else:
            self.version += 1
            await self._guarded(lambda: self._push(self.version), "weight push")
            await pipeline.set_version(self.version)
        t3 = time.monotonic()
        self.state.samples_seen += sum(len(g.samples) for g in groups)
        metrics = batch_metrics(groups, self.cfg.rewards, trained_on)
        metrics.update(stats)
        metrics.update({f"pipeline/{k}": float(v) for k, v in pipeline.take_counts().items()})
        metrics.update({
            "time/wait_s": t1 - t0, "time/train_s": t2 - t1, "time/sync_s": t3 - t2, "time/step_s": t3 - t0,
            "train/tokens_per_s": stats.get("train/tokens", 0.0) / max(t2 - t1, 1e-9),
            "gen/tokens_per_s": (pipeline.gen_tokens - tokens0) / max(t3 - t0, 1e-9),
            "policy_version": float(self.version), "samples_seen": float(self.state.samples_seen),
        })  # fmt: skip
        self.runlog.write_tasks(self.step, groups, trained_on)
        self.runlog.write("train", self.step, metrics)

    async def run(self) -> RunSummary:
        cfg = self.cfg
        await self.rollout.wait_ready(cfg.rollout.start_timeout_s)
        await self.grader.wait_ready(cfg.graders.start_timeout_s)
        await self._check_tasks()
        if self.version > 0 or self.policy.is_lora:
            await self.sync()
        requeued = [Task.from_dict(d) for d in self.state.inflight_tasks]
        g = cfg.sampling
        sampling = SamplingConfig(n=g.group_size, temperature=g.temperature, top_p=g.top_p, top_k=g.top_k,
                                  max_tokens=g.max_tokens, stop=list(g.stop))  # fmt: skip
        pipeline = RolloutPipeline(
            self.rollout, self.grader, cfg.rewards, sampling, self.stream, prompts_per_step=cfg.train.prompts_per_step,
            max_staleness=cfg.train.max_staleness, version=self.version, requeued=requeued, grade_retry=self.retry,
            adapter=self.adapter, outage_timeout_s=cfg.rollout.outage_timeout_s,
        )  # fmt: skip
        self.runlog.restart_clock()
        self.last_saved_step, self.last_saved_at = self.step, time.monotonic()
        if self.step == 0 and cfg.eval.at_start:
            await self._evaluate()
        pipeline.start()
        try:
            while self.step < cfg.train.steps and not self._out_of_time():
                await self._train_step(pipeline)
                if cfg.eval.every and self.step % cfg.eval.every == 0 and self.step < cfg.train.steps:
                    await self._evaluate()
                if self._checkpoint_due():
                    await self._checkpoint(pipeline)
            if cfg.eval.at_end:
                await self._evaluate()
            if cfg.checkpoint.at_end and self.last_saved_step != self.step:
                await self._checkpoint(pipeline)
        finally:
            await pipeline.stop()
        return RunSummary(self.run_dir, self.step, self.evals)

    def _checkpoint_due(self) -> bool:
        every, every_s = self.cfg.checkpoint.every, self.cfg.checkpoint.every_s
        by_steps = bool(every) and self.step % every == 0
        return by_steps or (every_s is not None and time.monotonic() - self.last_saved_at >= every_s)

    def _out_of_time(self) -> bool:
        limit = self.cfg.train.max_time_s
        if limit is None or self.runlog.training_s < limit:
            return False
        self.runlog.note(f"train.max_time_s reached ({self.runlog.training_s:.0f}s of training) at step {self.step}")
        return True

    async def close(self) -> None:
        self.runlog.close()
        await self.rollout.close()
        await self.grader.close()


def _seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


async def _run_async(trainer_factory: Callable[[], GRPOTrainer]) -> RunSummary:
    trainer = trainer_factory()
    try:
        return await trainer.run()
    finally:
        await trainer.close()


def run_grpo(cfg: GRPOConfig, resume: bool = False) -> RunSummary:
    """Run (or resume) GRPO as configured; embedded services are stopped on exit, error or Ctrl-C."""
    model_dir = resolve_model_path(cfg.model.path)
    if cfg.model.finetune == "qlora":  # fail before starting any service
        check_qlora_supported(resolve_device(cfg.model.device))
    run_dir, ckpt = prepare_run_dir(cfg, resume)
    if cfg.model.threads is not None:
        torch.set_num_threads(cfg.model.threads)
    _seed(cfg.train.seed)
    with Services(cfg, model_dir, run_dir / "logs") as services:
        # The rollout engine loads in its own process while the trainer loads the policy here.
        policy = Policy(cfg.model, beta=cfg.loss.beta)
        summary = asyncio.run(_run_async(lambda: GRPOTrainer(cfg, run_dir, ckpt, services, policy)))
    (run_dir / "summary.json").write_text(json.dumps(
        {"steps": summary.steps, "first_eval": summary.first_eval, "last_eval": summary.last_eval}, indent=1))
    return summary

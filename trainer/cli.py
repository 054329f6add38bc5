"""`rlvr train grpo`. Only typer and the standard library are imported at module level;
the config is parsed (and reported) before torch, vLLM clients or the model are loaded."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Any

import typer

EXIT_CONFIG = 2
EXIT_SERVICE = 3
EXIT_INTERRUPTED = 130
def load_config_or_exit(load: Any, config: Path | None, overrides: list[str] | None, show_config: bool) -> Any:
    """A stage command's config: `load(config, overrides)`, or exit EXIT_CONFIG naming the file and field. With
    --show-config it prints the resolved config and returns None (the command then stops)."""
    from rlvr.config import ConfigError

    try:
        cfg = load(config, list(overrides or []))
    except (ConfigError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    if show_config:
        typer.echo(cfg.model_dump_json(indent=2))
        return None
    return cfg

def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)  # fmt: skip
    for noisy in ("httpx", "urllib3", "transformers", "torch", "peft"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _sigterm_to_exit() -> None:
    # SIGTERM unwinds like Ctrl-C, so the embedded services are stopped by the normal clean-up path.
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _run(cfg: Any, resume: bool) -> Any:
    """run_grpo with the errors a user can act on turned into one clear line and an exit code."""
    from rlvr.procs import ServiceStartError
    from rollout.client import RolloutError
    from trainer.data import DataError
    from trainer.grpo import RunDirError, run_grpo
    from trainer.pipeline import GenerationFailure, GraderFailure, RolloutOutage
    from trainer.policy import PolicyError

    try:
        return run_grpo(cfg, resume=resume)
    except (PolicyError, RunDirError, DataError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    except (ServiceStartError, RolloutOutage, RolloutError, GraderFailure, GenerationFailure) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_SERVICE) from None
    except KeyboardInterrupt:
        typer.echo("interrupted; embedded services stopped (continue with --resume)", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None


def train_grpo(
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML run config (see examples/grpo_*.toml)."),
    overrides: list[str] | None = typer.Argument(None, help="Config overrides, e.g. train.steps=50 optim.lr=1e-5."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in run_dir."),
    show_config: bool = typer.Option(False, "--show-config", help="Print the resolved config and exit."),
    help_config: bool = typer.Option(False, "--help-config", help="Print every config field's documentation and exit."),
) -> None:
    """Train a policy with GRPO against the rollout and grader services (started here unless given).

    Writes <run_dir>/metrics.jsonl, tasks.jsonl, tensorboard/ and checkpoints/."""
    from rlvr.config import field_help
    from trainer.config import GRPOConfig, load_grpo_config

    if help_config:
        typer.echo("\n".join(field_help(GRPOConfig)))
        return
    cfg = load_config_or_exit(load_grpo_config, config, overrides, show_config)
    if cfg is None:
        return
    _setup_logging()
    _sigterm_to_exit()
    summary = _run(cfg, resume)
    typer.echo(f"done: {summary.steps} steps; run dir {summary.run_dir}")


def _last_examples(run_dir: Path, k: int) -> str:
    """The first k rows of the last evaluation in <run_dir>/eval_samples.jsonl."""
    from trainer.metrics import EVAL_FILE, read_records

    rows = read_records(run_dir / EVAL_FILE)
    last = [r for r in rows if rows and r["step"] == rows[-1]["step"]][:k]
    return "\n".join(f"  {r['prompt']!r} → {r['completion'].strip()!r} → {r['verdict']}" for r in last)


def register(app: typer.Typer, group: typer.Typer) -> None:
    """`rlvr train grpo` / `rlvr train distill` on the train group (`rlvr demo` is pipeline/demo.py's)."""
    from trainer.distill.cli import train_distill

    group.command("grpo")(train_grpo)
    group.command("distill")(train_distill)

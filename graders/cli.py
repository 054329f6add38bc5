"""Commands of the graders component: `rlvr grade ...` and `rlvr serve graders ...`.

Only typer is imported at module level; grpc, docker and math-verify load when a command runs."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

EXIT_BAD_INPUT = 2
EXIT_INFRA = 3


def serve_graders(
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML config (see examples/graders.toml)."),
    host: str | None = typer.Option(None, help="Bind address (default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="TCP port; 0 picks a free one (announced on stdout)."),
    token: str | None = typer.Option(None, envvar="RLVR_GRADER_TOKEN", help="Shared token clients must send."),
    tls_cert: Path | None = typer.Option(None, help="PEM certificate chain (enables TLS with --tls-key)."),
    tls_key: Path | None = typer.Option(None, help="PEM private key."),
    backend: str | None = typer.Option(None, help="Sandbox backend: auto | docker | bwrap | none."),
    pool_size: int | None = typer.Option(None, help="Warm sandbox containers (= programs run at once)."),
    max_inflight: int | None = typer.Option(None, help="Items admitted at once before RESOURCE_EXHAUSTED."),
    set_: list[str] = typer.Option([], "--set", help="Config override key.path=value (repeatable)."),
) -> None:
    """Run the grader gRPC service (health + reflection; SIGTERM stops it gracefully)."""
    overrides = list(set_)
    for key, value in (("server.host", host), ("server.port", port), ("sandbox.backend", backend),
                       ("sandbox.pool_size", pool_size), ("concurrency.max_inflight", max_inflight)):
        if value is not None:
            overrides.append(f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}")
    from graders.config import load
    from graders.server import run
    from rlvr.config import ConfigError

    try:
        cfg = load(config, overrides)
    except ConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    updates = {k: v for k, v in (("token", token), ("tls_cert", tls_cert), ("tls_key", tls_key)) if v is not None}
    cfg.server = cfg.server.model_copy(update=updates)
    try:
        run(cfg)
    except ValueError as e:  # refused bind (public without token/TLS), bad TLS pair
        typer.echo(f"graders: {e}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def grade(
    input: Path = typer.Option(..., "--input", "-i", exists=True, dir_okay=False, help="Requests, one JSON per line."),
    output: Path = typer.Option(..., "--output", "-o", dir_okay=False, help="Results JSONL (written atomically)."),
    server: str | None = typer.Option(None, help="HOST:PORT of a running grader service; default: start one."),
    token: str | None = typer.Option(None, envvar="RLVR_GRADER_TOKEN", help="Shared token for --server."),
    tls_ca: Path | None = typer.Option(None, help="CA bundle for a TLS --server."),
    config: Path | None = typer.Option(None, "--config", "-c", help="Config of the embedded server."),
    keep_going: bool = typer.Option(False, help="Record malformed lines as error rows instead of stopping."),
    chunk: int = typer.Option(256, min=1, help="Items per streaming call."),
) -> None:
    """Grade a JSONL file (`grader`, `completion`, fields...) into a JSONL file with reward and status.

    Exit codes: 0 done; 2 malformed input; 3 some items hit infrastructure errors (retry them)."""
    from graders.batch import InputError, read_rows

    try:
        rows = read_rows(input, keep_going)
    except InputError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    infra = _grade_file(rows, output, server, token, tls_ca, config, chunk)
    if infra:
        typer.echo(f"{infra} item(s) hit infrastructure errors (status infra_error); retry them", err=True)
        raise typer.Exit(EXIT_INFRA)


def _grade_file(rows: list, output: Path, server: str | None, token: str | None, tls_ca: Path | None,
                config: Path | None, chunk: int) -> int:
    import asyncio
    from collections import Counter

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from graders.batch import grade_rows, output_line, write_atomic
    from rlvr.procs import ServiceProcess

    console = Console(stderr=True)
    embedded = None
    if server is None:
        args = ["--port", "0"] + (["--config", str(config)] if config else [])
        embedded = ServiceProcess("graders.server", args, "graders")
        server = embedded.start(timeout_s=180)  # it reads RLVR_GRADER_TOKEN like we do
    try:
        todo = sum(r.item is not None for r in rows)
        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, disable=not console.is_terminal) as bar:
            task = bar.add_task("grading", total=todo)
            results = asyncio.run(grade_rows(rows, server, token, tls_ca, chunk,
                                             on_result=lambda _: bar.advance(task)))
    finally:
        if embedded is not None:
            embedded.stop()
    write_atomic(output, [output_line(r, results.get(i)) for i, r in enumerate(rows)])
    counts = Counter(r.status.label for r in results.values())
    counts.update({"invalid_request": sum(r.item is None for r in rows)} if any(r.item is None for r in rows) else {})
    console.print(f"graded {len(rows)} line(s) → {output}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return counts.get("infra_error", 0)


def register(app: typer.Typer, serve_app: typer.Typer) -> None:
    """Add `rlvr grade` and `rlvr serve graders` to the rlvr CLI."""
    app.command("grade")(grade)
    serve_app.command("graders")(serve_graders)


def serve_main() -> None:
    """`python -m graders.server [options]`: the same options as `rlvr serve graders`."""
    typer.run(serve_graders)


if __name__ == "__main__":
    serve_main()
    sys.exit(0)

"""Commands of this component (registered on the `rlvr` CLI)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, group: typer.Typer) -> None:
    """Add this component's commands to the rlvr CLI (filled in by the component's issue)."""

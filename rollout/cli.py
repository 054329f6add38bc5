"""`rlvr serve rollout`: the same server as `python -m rollout.server`, on the rlvr CLI."""

from __future__ import annotations

from pathlib import Path

import typer


def _argv(**opts: object) -> list[str]:
    """Typer options -> rollout.server flags (None = not given, so the config file or default applies)."""
    argv: list[str] = []
    for key, value in opts.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, list):
            for v in value:
                argv += [flag, str(v)]
        else:
            argv += [flag, str(value)]
    return argv


def register(app: typer.Typer, group: typer.Typer) -> None:
    """Add `rlvr serve rollout` to the rlvr CLI."""

    @group.command("rollout")
    def serve_rollout(
        model: Path = typer.Option(None, help="HF model directory to serve."),
        config: Path = typer.Option(None, help="TOML file with RolloutConfig fields."),
        set_: list[str] = typer.Option([], "--set", help="Override a config field: key=value."),
        host: str = typer.Option(None, help="Bind address (default 127.0.0.1)."),
        port: int = typer.Option(None, help="TCP port; 0 = a free one."),
        token: str = typer.Option(None, help="Shared secret (or $RLVR_ROLLOUT_TOKEN)."),
        tls_cert: Path = typer.Option(None, help="PEM certificate chain."),
        tls_key: Path = typer.Option(None, help="PEM private key."),
        max_model_len: int = typer.Option(None, help="Prompt + completion token limit."),
        dtype: str = typer.Option(None, help="auto | bfloat16 | float32 | float16."),
        enable_lora: bool = typer.Option(False, help="Allow LoRA adapters."),
        max_lora_rank: int = typer.Option(None, help="Largest adapter rank."),
        max_loras: int = typer.Option(None, help="Adapters active in one batch."),
        lora_mode: str = typer.Option(None, help="auto | native | merge (adapters folded into the weights)."),
        kv_cache_gib: float = typer.Option(None, help="KV cache GiB (VLLM_CPU_KVCACHE_SPACE)."),
        threads: int = typer.Option(None, help="Engine OpenMP threads (unpinned unless --cpu-bind)."),
        cpu_bind: str = typer.Option(None, help='"auto", "nobind" or cores like "0-1".'),
        compile_: bool = typer.Option(False, "--compile", help="torch.compile the model (slower start)."),
        seed: int = typer.Option(None, help="Engine seed."),
    ) -> None:
        """Serve generation + weight sync over gRPC (vLLM engine); prints `RLVR_READY rollout ADDR`."""
        from rollout.server import main

        argv = _argv(
            model=model, config=config, set=set_, host=host, port=port, token=token, tls_cert=tls_cert,
            tls_key=tls_key, max_model_len=max_model_len, dtype=dtype, enable_lora=enable_lora,
            max_lora_rank=max_lora_rank, max_loras=max_loras, lora_mode=lora_mode, kv_cache_gib=kv_cache_gib,
            threads=threads, cpu_bind=cpu_bind, compile=compile_, seed=seed,
        )  # fmt: skip
        raise typer.Exit(main(argv))

"""Client-side channel construction shared by the rollout and grader clients."""

from __future__ import annotations

from pathlib import Path

import grpc

from rlvr.serving import MAX_MESSAGE_BYTES, TOKEN_METADATA_KEY

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.enable_retries", 0),  # our clients retry explicitly, with backoff and logging
]


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return ((TOKEN_METADATA_KEY, f"Bearer {token}"),) if token else ()


def aio_channel(address: str, tls_ca: Path | None = None) -> grpc.aio.Channel:
    """An asyncio channel to `address` (host:port); TLS when a CA bundle is given."""
    if tls_ca is not None:
        creds = grpc.ssl_channel_credentials(root_certificates=Path(tls_ca).read_bytes())
        return grpc.aio.secure_channel(address, creds, options=CHANNEL_OPTIONS)
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)

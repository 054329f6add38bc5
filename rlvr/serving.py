"""What every rlvr gRPC server shares: loopback bind by default, shared-token auth, optional TLS, the
standard health service, reflection, and a graceful stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

log = logging.getLogger(__name__)

TOKEN_METADATA_KEY = "authorization"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Health checks and reflection stay reachable without a token so probes and grpcurl work.
PUBLIC_METHOD_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


@dataclass
class ServerOptions:
    """Network and security options shared by the rollout and grader servers."""

    host: str = "127.0.0.1"
    """Bind address. Loopback by default; binding anything else requires a token or TLS."""
    port: int = 0
    """TCP port; 0 picks a free port (printed at start-up)."""
    token: str | None = None
    """Shared secret clients send as `authorization: Bearer <token>` metadata."""
    tls_cert: Path | None = None
    """PEM certificate chain; with tls_key enables TLS."""
    tls_key: Path | None = None
    """PEM private key for tls_cert."""
    grace_s: float = 30.0
    """How long in-flight calls may run after SIGTERM before they are cancelled."""
    allow_insecure_public: bool = False
    """Allow a non-loopback bind with neither token nor TLS (not recommended)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        loopback = self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")
        if not loopback and not (self.token or self.tls_cert) and not self.allow_insecure_public:
            raise ValueError(
                f"refusing to bind {self.host} without --token or TLS (use --allow-insecure-public to override)"
            )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("TLS needs both tls_cert and tls_key")


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls whose `authorization` metadata does not carry the shared token."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token")

        self._deny = deny

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        if method.startswith(PUBLIC_METHOD_PREFIXES):
            return await continuation(handler_call_details)
        md = dict(handler_call_details.invocation_metadata or ())
        got = md.get(TOKEN_METADATA_KEY, "")
        got_b = got.encode() if isinstance(got, str) else bytes(got)
        if hmac.compare_digest(got_b, self._expected):
            return await continuation(handler_call_details)
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # type: ignore[return-value]
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(self._deny_stream)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(self._deny)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(self._deny_stream)
        return grpc.unary_unary_rpc_method_handler(self._deny)

    async def _deny_stream(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token")
        yield  # pragma: no cover  (makes this an async generator)


class ManagedServer:
    """An aio gRPC server with health + reflection, started by `start()` and stopped gracefully."""

    def __init__(
        self,
        options: ServerOptions,
        register: Callable[[grpc.aio.Server], None],
        service_names: Iterable[str],
    ) -> None:
        options.check()
        self.options = options
        interceptors = [TokenAuthInterceptor(options.token)] if options.token else []
        self.server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                # clients ping every 30 s (rlvr.channel); long calls without data must not get GOAWAY
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.keepalive_permit_without_calls", 1),
            ],
        )
        register(self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.service_names = list(service_names)
        reflection.enable_server_reflection(
            [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
        )
        self.port = 0
        self._stopping = asyncio.Event()

    @property
    def address(self) -> str:
        host = self.options.host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    async def start(self) -> str:
        target = f"[{self.options.host}]:{self.options.port}" if ":" in self.options.host else (
            f"{self.options.host}:{self.options.port}"
        )
        if self.options.tls_cert and self.options.tls_key:
            creds = grpc.ssl_server_credentials(
                [(Path(self.options.tls_key).read_bytes(), Path(self.options.tls_cert).read_bytes())]
            )
            self.port = self.server.add_secure_port(target, creds)
        else:
            self.port = self.server.add_insecure_port(target)
        if self.port == 0:
            raise OSError(f"could not bind {target}")
        await self.server.start()
        return self.address

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self.health.set("", status)
        for name in self.service_names:
            await self.health.set(name, status)

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)

    def request_stop(self) -> None:
        self._stopping.set()

    async def wait_for_stop_signal(self) -> None:
        await self._stopping.wait()

    async def stop(self, on_draining: Callable[[], Awaitable[None]] | None = None) -> None:
        """Report NOT_SERVING, let in-flight calls finish within the grace period, then close."""
        await self.health.enter_graceful_shutdown()
        if on_draining is not None:
            await on_draining()
        await self.server.stop(self.options.grace_s)


def announce(name: str, address: str) -> None:
    """One machine-readable line that parent processes (trainer, tests) wait for."""
    print(f"RLVR_READY {name} {address}", flush=True)

"""Shared server options: loopback by default, public binds need a token or TLS."""

from __future__ import annotations

import pytest

from rlvr.serving import ServerOptions


def test_loopback_is_default_and_allowed() -> None:
    opts = ServerOptions()
    assert opts.host == "127.0.0.1"
    opts.check()


def test_public_bind_without_auth_is_refused() -> None:
    with pytest.raises(ValueError, match="without --token or TLS"):
        ServerOptions(host="0.0.0.0").check()
    ServerOptions(host="0.0.0.0", token="s3cret").check()
    ServerOptions(host="0.0.0.0", allow_insecure_public=True).check()


def test_tls_needs_cert_and_key(tmp_path) -> None:
    with pytest.raises(ValueError, match="both"):
        ServerOptions(tls_cert=tmp_path / "cert.pem").check()

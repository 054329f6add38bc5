"""The embedded grader server gets a sandbox only when the grader service itself (ListGraders) says a grader
the run uses is sandboxed; no grader name is hard-coded in the trainer (service processes faked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from trainer import services
from trainer.config import GRPOConfig


class FakeProcess:
    started: ClassVar[list[list[str]]] = []
    stopped: ClassVar[list[list[str]]] = []

    def __init__(self, module: str, args: list[str], name: str, env: dict[str, str], log_path: Path) -> None:
        self.args, self.log_path, self.name = args, log_path, name

    def start(self, timeout_s: float = 0) -> str:
        FakeProcess.started.append(self.args)
        return f"127.0.0.1:{len(FakeProcess.started)}"

    def stop(self, timeout_s: float = 0) -> None:
        FakeProcess.stopped.append(self.args)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    asked: dict[str, Any] = {}
    FakeProcess.started, FakeProcess.stopped = [], []
    monkeypatch.setattr(services, "ServiceProcess", FakeProcess)

    def sandboxed(address: str, names: list[str], token: str | None = None) -> list[str]:
        asked.update(address=address, names=names)
        return [n for n in names if n == "python_tests"]  # what the fake service's ListGraders answers

    monkeypatch.setattr(services, "sandboxed_graders", sandboxed)
    return asked


def _backend(args: list[str]) -> str:
    return args[args.index("--backend") + 1]


def _start(cfg: GRPOConfig, tmp_path: Path) -> services.Services:
    svc = services.Services(cfg.model_copy(update={"rollout": cfg.rollout.model_copy(update={"address": ["x:1"]})}),
                            tmp_path, tmp_path)  # fmt: skip
    svc.start()
    return svc


def test_no_sandbox_when_no_used_grader_is_sandboxed(fake: dict[str, Any], tmp_path: Path) -> None:
    svc = _start(GRPOConfig(), tmp_path)
    assert [_backend(a) for a in FakeProcess.started] == ["none"] and not FakeProcess.stopped
    assert fake["names"] == ["last_integer", "math"] and svc.grader_address == fake["address"]


def test_restarted_with_a_sandbox_when_the_service_says_so(fake: dict[str, Any], tmp_path: Path) -> None:
    cfg = GRPOConfig.model_validate({"rewards": [{"grader": "python_tests"}], "data": {"source": "humaneval"}})
    svc = _start(cfg, tmp_path)
    assert [_backend(a) for a in FakeProcess.started] == ["none", "auto"]
    assert [_backend(a) for a in FakeProcess.stopped] == ["none"] and svc.grader_address == "127.0.0.1:2"


def test_a_configured_backend_is_not_second_guessed(fake: dict[str, Any], tmp_path: Path) -> None:
    _start(GRPOConfig.model_validate({"graders": {"sandbox": "docker"}}), tmp_path)
    assert [_backend(a) for a in FakeProcess.started] == ["docker"] and fake == {}


def test_grader_service_alone_for_a_gguf_model(fake: dict[str, Any], tmp_path: Path) -> None:
    # `rlvr eval` of a GGUF file runs llama.cpp in-process: no rollout server is started (nor an address needed).
    svc = services.Services(GRPOConfig(), tmp_path / "model.gguf", tmp_path, rollout=False)
    svc.start()
    assert [_backend(a) for a in FakeProcess.started] == ["none"] and svc.rollout_addresses == []
    assert svc.embedded == ["graders"]

"""The pipeline's service pool (service processes and the weight push faked): stages whose models have one shape
and whose rollout settings agree share an engine, which gets the new stage's weights as version 0 instead of a
restart; another shape or other settings start another engine; the least recently used engine is stopped past
max_engines; a dead engine is replaced; stages share a grader server, one with a sandbox when needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from trainer import service_pool, services
from trainer.config import GRPOConfig
from trainer.service_pool import ServicePool, active_pool


class FakeProcess:
    started: ClassVar[list[list[str]]] = []
    stopped: ClassVar[list[list[str]]] = []

    def __init__(self, module: str, args: list[str], name: str, env: dict[str, str] | None = None,
                 log_path: Path | None = None) -> None:  # fmt: skip
        self.args, self.name, self.address, self.log_path = args, name, None, log_path
        self.running = False
        self.proc = None

    def start(self, timeout_s: float = 0) -> str:
        FakeProcess.started.append(self.args)
        self.running, self.address = True, f"127.0.0.1:{len(FakeProcess.started)}"
        return self.address

    def alive(self) -> bool:
        return self.running

    def stop(self, timeout_s: float = 0) -> None:
        self.running = False
        FakeProcess.stopped.append(self.args)


@pytest.fixture
def pushed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    FakeProcess.started, FakeProcess.stopped = [], []
    monkeypatch.setattr(service_pool, "ServiceProcess", FakeProcess)
    monkeypatch.setattr(services, "ServiceProcess", FakeProcess)
    monkeypatch.setattr(service_pool, "_serve_as_version_0", lambda address, model, cfg: out.append((address, model)))
    monkeypatch.setattr(services, "sandboxed_graders",
                        lambda address, names, token=None: [n for n in names if n == "python_tests"])  # fmt: skip
    return out


def model(root: Path, name: str, layers: int = 30) -> Path:
    d = root / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 576, "num_hidden_layers": layers}))
    (d / "tokenizer.json").write_text('{"vocab": 1}')
    return d


def rollouts() -> list[list[str]]:
    return [a for a in FakeProcess.started if a[0] == "rollout.server"]


def test_same_shape_shares_one_engine_and_gets_the_weights_as_version_0(pushed: list[Any], tmp_path: Path) -> None:
    sft, grpo = model(tmp_path, "sft"), model(tmp_path, "grpo")
    cfg = GRPOConfig()
    with ServicePool(tmp_path / "logs") as pool:
        assert active_pool() is pool
        with services.Services(cfg, sft, tmp_path) as first:
            assert first.embedded == []  # leased, not owned
        with services.Services(cfg, grpo, tmp_path) as second:
            pass
        assert second.rollout_addresses == first.rollout_addresses and len(rollouts()) == 1
        assert pushed == [(first.rollout_addresses[0], grpo)]  # the fresh engine serves sft already: no push
        assert second.grader_address == first.grader_address and len(FakeProcess.started) == 2
        assert FakeProcess.stopped == []  # a stage's stop() leaves pooled services running
        assert (pool.started, pool.swapped) == (1, 1)
    assert active_pool() is None and len(FakeProcess.stopped) == 2  # the pool stops them when it closes


def test_another_shape_or_other_settings_get_their_own_engine(pushed: list[Any], tmp_path: Path) -> None:
    teacher, student = model(tmp_path, "teacher"), model(tmp_path, "student", layers=11)
    cfg = GRPOConfig()
    longer = cfg.model_copy(update={"rollout": cfg.rollout.model_copy(update={"max_model_len": 4096})})
    with ServicePool(tmp_path / "logs", max_engines=2) as pool:
        a = pool.rollout_address(cfg, teacher)
        b = pool.rollout_address(cfg, student)
        assert a != b and pool.rollout_address(cfg, teacher) == a  # a used last: b is now the oldest
        c = pool.rollout_address(longer, teacher)  # third engine: the least recently used (b) is stopped
        assert len({a, b, c}) == 3 and FakeProcess.stopped == [rollouts()[1]]
        assert pool.rollout_address(cfg, student) not in (a, b, c)  # b is gone: a new one; a (oldest) stopped
        assert pushed == [(a, teacher)]


def test_a_dead_engine_is_replaced(pushed: list[Any], tmp_path: Path) -> None:
    m = model(tmp_path, "m")
    with ServicePool(tmp_path / "logs") as pool:
        a = pool.rollout_address(GRPOConfig(), m)
        next(iter(pool.engines.values())).running = False
        assert pool.rollout_address(GRPOConfig(), m) != a and pushed == []


def test_graders_are_shared_and_a_sandboxed_one_serves_everyone(pushed: list[Any], tmp_path: Path) -> None:
    plain = GRPOConfig()
    code = GRPOConfig.model_validate({"rewards": [{"grader": "python_tests"}], "data": {"source": "humaneval"}})
    with ServicePool(tmp_path / "logs") as pool:
        g1 = pool.grader_address(plain.graders, plain.used_graders())
        assert pool.grader_address(plain.graders, plain.used_graders()) == g1
        g2 = pool.grader_address(code.graders, code.used_graders())  # needs a sandbox: a new one with "auto"
        assert g2 != g1 and pool.grader_address(plain.graders, ["math"]) == g2  # a sandboxed one grades math too
        backends = [a[a.index("--backend") + 1] for a in FakeProcess.started]
        assert backends == ["none", "auto"]

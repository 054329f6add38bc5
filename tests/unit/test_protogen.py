"""The committed gRPC stubs must match the .proto contracts."""

from __future__ import annotations

import shutil
from pathlib import Path

from rlvr import protogen


def test_committed_stubs_are_fresh() -> None:
    assert protogen.stale_files() == [], "run `make proto` (python -m rlvr.protogen) and commit rlvr/v1"


def test_stale_check_detects_a_changed_contract(tmp_path: Path) -> None:
    proto_copy = tmp_path / "proto"
    shutil.copytree(protogen.PROTO_DIR, proto_copy)
    grader = proto_copy / "rlvr" / "v1" / "grader.proto"
    grader.write_text(grader.read_text().replace("string message = 6;", "string message = 6;\n  string note = 99;"))
    stale = protogen.stale_files(proto_dir=proto_copy)
    assert "grader_pb2.py" in stale and "grader_pb2.pyi" in stale


def test_contract_has_the_typed_status_enum() -> None:
    from rlvr.v1 import grader_pb2

    names = set(grader_pb2.GradeStatus.keys())
    for status in ("PASSED", "FAILED", "TIMEOUT", "MEMORY_LIMIT", "OUTPUT_LIMIT", "RUNTIME_ERROR", "INFRA_ERROR"):
        assert f"GRADE_STATUS_{status}" in names

"""Generate the gRPC stubs in rlvr/v1 from the contracts in proto/ (the only way stubs are made).

    python -m rlvr.protogen          # regenerate
    python -m rlvr.protogen --check  # exit 1 when the committed stubs are stale
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_PACKAGE = Path("rlvr") / "v1"


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.rglob("*.proto"))


def generate(out_root: Path) -> list[Path]:
    """Run protoc (grpc_tools) with python, grpc and mypy (.pyi) outputs into out_root; return files written."""
    import grpc_tools
    from grpc_tools import protoc

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    files = [str(p.relative_to(PROTO_DIR)) for p in proto_files()]
    bindir = Path(sys.executable).parent
    args = [
        "protoc",
        f"--plugin=protoc-gen-mypy={shutil.which('protoc-gen-mypy', path=str(bindir)) or 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={shutil.which('protoc-gen-mypy_grpc', path=str(bindir)) or 'protoc-gen-mypy_grpc'}",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed on " + ", ".join(files))
    pkg = out_root / OUT_PACKAGE
    (pkg / "__init__.py").write_text('"""Generated gRPC stubs (python -m rlvr.protogen). Do not edit."""\n')
    (pkg / "py.typed").write_text("")
    return sorted(p for p in pkg.iterdir() if p.is_file())


def stale_files() -> list[str]:
    """Names of generated files that differ from (or are missing in) the committed rlvr/v1."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        committed = ROOT / OUT_PACKAGE
        names = {p.name for p in fresh} | {p.name for p in committed.glob("*") if p.is_file()}
        stale = []
        for name in sorted(names):
            a, b = Path(tmp) / OUT_PACKAGE / name, committed / name
            if not (a.exists() and b.exists() and filecmp.cmp(a, b, shallow=False)):
                stale.append(name)
        return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check that rlvr/v1 is up to date")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print("stale generated stubs: " + ", ".join(stale) + " (run: python -m rlvr.protogen)")
            return 1
        print("stubs up to date")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        target = ROOT / OUT_PACKAGE
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for p in fresh:
            shutil.copy2(p, target / p.name)
    print(f"generated {len(fresh)} files in {OUT_PACKAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

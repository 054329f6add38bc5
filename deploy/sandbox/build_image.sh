#!/usr/bin/env bash
# Build the grader sandbox image without a registry: debootstrap a minimal Debian rootfs with
# python3, add an unprivileged user, and `docker import` it. Idempotent: exits at once when the
# image exists. On machines with a registry, deploy/sandbox/Dockerfile builds the same image.
set -euo pipefail
IMAGE="${RLVR_SANDBOX_IMAGE:-rlvr-sandbox:bookworm-1}"
MIRROR="${RLVR_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if docker image inspect "$IMAGE" >/dev/null 2>&1 && [ "${1:-}" != "--force" ]; then
  echo "sandbox image $IMAGE present"
  exit 0
fi

root=$(mktemp -d /tmp/rlvr-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "debootstrap bookworm (minbase + python3) into $root ..."
debootstrap --variant=minbase --include=python3 bookworm "$root" "$MIRROR" >/tmp/rlvr-debootstrap.log 2>&1 \
  || { tail -20 /tmp/rlvr-debootstrap.log; echo "debootstrap failed" >&2; exit 1; }
# The graded program runs as uid 10001 with no home; the image carries no apt caches or docs.
chroot "$root" /usr/sbin/useradd --uid 10001 --no-create-home --home-dir /work --shell /usr/sbin/nologin sandbox
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
mkdir -p "$root/work"
tar -C "$root" -c . | docker import \
  --change 'USER 10001:10001' --change 'WORKDIR /work' --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
  --change 'CMD ["python3"]' - "$IMAGE" >/dev/null
echo "built $IMAGE"

#!/usr/bin/env bash
# Install a line on Linux aarch64 (Ascend's Kunpeng hosts) as docs/stacks.md says, and run the README's
# first command there, on an x86_64 machine: a Debian bookworm arm64 root (Python 3.11) made by
# debootstrap and run through qemu-user (binfmt_misc). Slow (everything is emulated) but real: the
# aarch64 wheels from PyPI, built sdists, the aarch64 torch, the demo model transcribing.
#
#   sudo stacks/try_aarch64.sh torch2.4|torch2.6|current [ROOT]     (ROOT: default /var/tmp/arm64-root)
#
# The installs are the README's commands, run by uv (its aarch64 build from PyPI, as CI runs them on
# x86_64: same pinned files, same packages) unless INSTALLER=pip: pip itself under emulation spends
# most of an hour resolving. The README command runs under emulation too (minutes).
#
# Needs root, debootstrap and qemu-user-static (apt-get install debootstrap qemu-user-static).
set -euo pipefail
line=${1:?usage: try_aarch64.sh torch2.4|torch2.6|current [ROOT]}
root=${2:-/var/tmp/arm64-root}
repo=$(cd "$(dirname "$0")/.." && pwd)
case "$line" in
  torch2.4) torch=2.4.0; pins=stacks/torch2.4 ;;
  torch2.6) torch=2.6.0; pins=stacks/torch2.6 ;;
  current) torch=; pins=. ;;
  *) echo "try_aarch64.sh: unknown line '$line' (torch2.4, torch2.6, current)" >&2; exit 2 ;;
esac

if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register
fi
if [ ! -x "$root/usr/bin/python3" ]; then
  debootstrap --arch=arm64 --variant=minbase \
    --include=python3,python3-venv,python3-dev,gcc,g++,ca-certificates,espeak-ng,sox \
    bookworm "$root" http://deb.debian.org/debian
fi
# The host's certificates (a registry mirror may use its own) and name service.
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
cp /etc/resolv.conf "$root/etc/resolv.conf"
for fs in proc sys dev; do mountpoint -q "$root/$fs" || mount --bind "/$fs" "$root/$fs"; done
trap 'for fs in proc sys dev; do umount "$root/$fs" 2>/dev/null || true; done' EXIT

rm -rf "$root/src" && git -C "$repo" archive --format=tar --prefix=src/ HEAD | tar -x -C "$root"
chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root OMP_NUM_THREADS=1 \
  PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt UV_SYSTEM_CERTS=1 PIP_DEFAULT_TIMEOUT=180 UV_HTTP_TIMEOUT=180 PIP_DISABLE_PIP_VERSION_CHECK=1 \
  TORCH=$torch PINS=$pins INSTALLER="${INSTALLER:-uv}" /bin/bash -euc '
    cd /src
    echo "try_aarch64: $(uname -m), $(python3 --version)"
    rm -rf /venv && python3 -m venv /venv
    if [ "$INSTALLER" = uv ]; then
      [ -x /uv/bin/uv ] || { python3 -m venv /uv && /uv/bin/pip install -q -r .ci/requirements-uv.txt; }
      pip() { /uv/bin/uv pip "$@" --python /venv/bin/python; }
    else
      pip() { /venv/bin/pip "$@"; }
    fi
    start=$SECONDS
    if [ -n "$TORCH" ]; then
      pip install -q "torch==$TORCH"      # on aarch64 PyPI has the CPU build
      pip install -q -r $PINS/requirements.txt -c $PINS/constraints.txt
      pip install -q --no-deps -r $PINS/requirements-npu.txt
    else
      pip install -q -r requirements-npu.txt -c constraints.txt
    fi
    echo "try_aarch64: installed with $INSTALLER in $((SECONDS - start)) s"
    # NVIDIA tags some aarch64 wheels manylinux2014_sbsa (nvidia-cusparselt-cu13, needed by the CUDA
    # build that PyPI has for aarch64 from torch 2.11 on), which pip check rejects: reported, not fatal
    pip check || echo "try_aarch64: pip check found the problems above"
    pip list 2>/dev/null | grep -i -E "^(torch|torch.npu|nemo.toolkit|numpy) "
    start=$SECONDS
    /venv/bin/python check_accuracy_run_perf.py --model demo --audio examples/demo.wav
    echo "try_aarch64: README command 1 took $((SECONDS - start)) s"
  '

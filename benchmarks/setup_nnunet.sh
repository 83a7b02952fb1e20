#!/usr/bin/env bash
# Create benchmarks/.nnunet-venv with a CPU torch and a pinned nnunetv2, used only
# as the reference implementation for benchmarks/bench_plan.py.
#
# - Idempotent: does nothing if the venv already has the pinned versions.
# - Never part of CI (the venv is git-ignored; nothing in tests/ needs it).
# - torch is installed FIRST and pinned to a CPU build, so that nnunetv2's
#   "torch>=2.1.2" requirement is already satisfied and pip does not pull the
#   multi-GB CUDA wheels (nvidia-*). The script aborts if a dry run of the
#   nnunetv2 install would still download nvidia-* packages or another torch.
#
# Usage: bash benchmarks/setup_nnunet.sh            (PYTHON=python3.11 to choose)
#        FORCE=1 bash benchmarks/setup_nnunet.sh    (recreate from scratch)
set -euo pipefail

TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
NNUNET_VERSION="${NNUNET_VERSION:-2.8.1}"
PYTHON="${PYTHON:-python3}"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.nnunet-venv"
VPY="$VENV/bin/python"

already_ok() {
    [[ -x "$VPY" && -x "$VENV/bin/nnUNetv2_plan_and_preprocess" ]] || return 1
    "$VPY" - "$TORCH_VERSION" "$NNUNET_VERSION" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
want_torch, want_nnunet = sys.argv[1], sys.argv[2]
assert version("torch").split("+")[0] == want_torch, version("torch")
assert version("nnunetv2") == want_nnunet, version("nnunetv2")
import nnunetv2  # noqa: F401  (import must work)
EOF
}

if [[ "${FORCE:-0}" == "1" ]]; then
    rm -rf "$VENV"
fi

if already_ok; then
    echo "[setup_nnunet] $VENV already set up (torch $TORCH_VERSION, nnunetv2 $NNUNET_VERSION); skipping."
    exit 0
fi

echo "[setup_nnunet] creating $VENV with $("$PYTHON" --version 2>&1)"
[[ -x "$VPY" ]] || "$PYTHON" -m venv "$VENV"
"$VPY" -m pip install --quiet --upgrade pip

echo "[setup_nnunet] installing torch==$TORCH_VERSION (CPU build) first"
"$VPY" -m pip install "torch==$TORCH_VERSION"
if "$VPY" -m pip list 2>/dev/null | grep -qi '^nvidia-'; then
    echo "[setup_nnunet] ERROR: torch install pulled nvidia-* (CUDA) packages; aborting." >&2
    exit 1
fi

echo "[setup_nnunet] dry run of nnunetv2==$NNUNET_VERSION"
DRY="$("$VPY" -m pip install --dry-run "nnunetv2==$NNUNET_VERSION" "torch==$TORCH_VERSION" 2>&1)" || {
    echo "$DRY" >&2; exit 1; }
WOULD="$(echo "$DRY" | grep '^Would install' || true)"
echo "$WOULD"
if echo "$WOULD" | grep -Eqi '(^| )(nvidia-|torch-[0-9]|triton-)'; then
    echo "[setup_nnunet] ERROR: nnunetv2 install would download CUDA torch/nvidia-* packages; aborting." >&2
    exit 1
fi

echo "[setup_nnunet] installing nnunetv2==$NNUNET_VERSION"
"$VPY" -m pip install "nnunetv2==$NNUNET_VERSION" "torch==$TORCH_VERSION"

already_ok || { echo "[setup_nnunet] ERROR: verification failed" >&2; exit 1; }
"$VPY" - <<'EOF'
from importlib.metadata import version
print(f"[setup_nnunet] done: torch {version('torch')}, nnunetv2 {version('nnunetv2')}, "
      f"blosc2 {version('blosc2')}, numpy {version('numpy')}")
EOF

#!/usr/bin/env bash
# Set up swinctl from nothing: .venv, torch, mmcv 2.1.0 built with ops, the OpenMMLab stack, swinctl (editable).
# Idempotent: a second run reuses the venv and the cached mmcv wheel and takes seconds.
#
#   bash scripts/setup.sh            # set up into ./.venv
#   SWINCTL_VENV=/path bash scripts/setup.sh
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${SWINCTL_VENV:-$root/.venv}
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3

say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || die "swinctl needs Python 3.11 (found $("$python" --version 2>&1)); set PYTHON=/path/to/python3.11"

if [ ! -x "$venv/bin/python" ]; then
  say "creating virtual environment $venv"
  "$python" -m venv "$venv"
fi
# pip, minus the warnings a find-links entry of this machine's pip configuration that does not exist repeats for every
# package (harmless, and they drown what set-up says); the exit status is pip's.
pip_quiet() {
  "$venv/bin/python" -m pip --disable-pip-version-check "$@" 2> >(grep -v "^WARNING: Location '.*' is ignored" >&2)
}
pip=(pip_quiet)

# openmim imports pkg_resources, which setuptools 81 removed; mmcv's build needs wheel, ninja builds in parallel.
say "build tools (setuptools<81, wheel, ninja)"
"${pip[@]}" install -q 'setuptools>=69,<81' wheel ninja packaging

if ! "$venv/bin/python" -c 'import torch, torchvision' 2>/dev/null; then
  say "installing torch 2.14.1 + torchvision 0.29.1"
  "${pip[@]}" install -q torch==2.14.1 torchvision==0.29.1
fi

# mmcv 2.1.0 is the last release mmdet 3.3 / mmseg 1.2 accept, and PyPI has no wheel of it for torch 2.14:
# build it from its source release with ops. Its setup.py hard-codes -std=c++17; torch 2.14's headers need C++20.
mmcv_ok() { "$venv/bin/python" -c 'import mmcv, mmcv.ops; assert mmcv.__version__ == "2.1.0"' 2>/dev/null; }
if ! mmcv_ok; then
  cuda=cpu
  if command -v nvcc >/dev/null && command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then cuda=cuda; fi
  torch_tag=$("$venv/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')
  wheels=$("${pip[@]}" cache dir)/swinctl-wheels/mmcv-2.1.0-torch$torch_tag-$cuda
  mkdir -p "$wheels"
  if ! ls "$wheels"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
    say "building mmcv 2.1.0 with $cuda ops (about 9 minutes on 2 cores; cached in $wheels)"
    src=$(mktemp -d)
    trap 'rm -rf "$src"' EXIT
    "${pip[@]}" download -q --no-deps --no-binary :all: --no-build-isolation mmcv==2.1.0 -d "$src"
    tar -xzf "$src"/mmcv-2.1.0.tar.gz -C "$src"
    sed -i 's/-std=c++17/-std=c++20/g' "$src/mmcv-2.1.0/setup.py"
    grep -q -- '-std=c++20' "$src/mmcv-2.1.0/setup.py" || die "could not switch mmcv's build to C++20"
    export MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)}
    [ "$cuda" = cuda ] && export FORCE_CUDA=1
    "${pip[@]}" wheel -q --no-deps --no-build-isolation -w "$wheels" "$src/mmcv-2.1.0"
  else
    say "using cached mmcv wheel from $wheels"
  fi
  "${pip[@]}" install -q "$wheels"/mmcv-2.1.0-*.whl mmengine==0.10.7
  mmcv_ok || die "mmcv 2.1.0 installed but its compiled ops do not load"
fi

say "installing swinctl and the OpenMMLab stack (editable, with dev tools)"
"${pip[@]}" install -q -e "$root[dev]"
# The COCO panoptic API (mmdet's PQ evaluator needs it) is not on PyPI under its own name: panopticapi-lite 0.2.0
# is the same code (compared with cocodataset/panopticapi's master), installed without its numpy<2 pin, which
# nothing in it needs.
"${pip[@]}" install -q --no-deps panopticapi-lite==0.2.0

"$venv/bin/python" - <<'EOF'
import mmcv, mmdet, mmengine, mmseg, torch
from mmcv.ops import nms  # noqa: F401  (compiled ops load)
from panopticapi.evaluation import PQStat  # noqa: F401  (mmdet's CocoPanopticMetric)
print(f"[setup] ready: torch {torch.__version__}, mmcv {mmcv.__version__} (ops), mmengine {mmengine.__version__}, "
      f"mmdet {mmdet.__version__}, mmseg {mmseg.__version__}")
EOF
say "activate with: source ${venv#$PWD/}/bin/activate"

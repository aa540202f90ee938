#!/usr/bin/env bash
# GPU check for a machine with an NVIDIA GPU and no network (the lent GPU machine, or your own).
#
# Installs nothing. Uses the first Python whose torch sees a CUDA GPU: the machine's python3 (the
# repo's .venv holds a CPU-only torch) or, last, .venv/bin/python. Puts the repo on PYTHONPATH, runs
# the CUDA/TensorRT parity tests of tests/test_runtime.py and the engine benchmark of the rt network
# on every usable backend, and writes gpu_check.json, pytest.log and pytest.xml to $OUT (default
# ./out/gpu_check). Engines are cached in $NASFE_CAM_CACHE (default: a fresh temporary folder, so
# the TensorRT build time is measured too). Exit status: 0 when the tests passed.
#
#   OUT=/tmp/gpu scripts/gpu_check.sh            # extra arguments go to scripts/gpu_check.py
set -euo pipefail
cd "$(dirname "$0")/.."

out="${OUT:-$PWD/out/gpu_check}"
mkdir -p "$out"

py=""
for candidate in python3 /usr/bin/python3 .venv/bin/python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
        py="$candidate"
        break
    fi
done
if [ -z "$py" ]; then
    echo "gpu_check: no Python with a CUDA-enabled torch (tried python3, /usr/bin/python3, .venv/bin/python)" >&2
    exit 2
fi

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export NASFE_CAM_CACHE="${NASFE_CAM_CACHE:-$(mktemp -d)}"
echo "gpu_check: $("$py" -c 'import sys, torch; print(sys.executable, "torch", torch.__version__, torch.cuda.get_device_name(0))')"
exec "$py" scripts/gpu_check.py --out "$out" "$@"

"""The Python half of ``scripts/gpu_check.sh``: GPU parity tests and the engine benchmark.

Run by the shell script (which picks a CUDA-enabled Python and sets PYTHONPATH); it imports only
``engine`` (torch, numpy, safetensors; onnxruntime/OpenVINO/TensorRT where installed), never the
camera app, so it runs on a bare GPU image without MediaPipe or Qt.

Writes to ``--out``: ``pytest.log`` and ``pytest.xml`` (the GPU tests of tests/test_runtime.py) and
``gpu_check.json``::

    {"machine": ..., "tests": {"returncode", "summary"},
     "parity_rt": {backend: {"psnr_db": ..., "min_psnr_db": ...}},
     "engine": {backend: {"enhancer", "load_s", "batch_1": EngineTiming, "batch_4": EngineTiming}}}
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from engine.runtime import backend_status, create_enhancer
from engine.runtime.base import to_uint8_nhwc
from engine.runtime.benchmark import machine_info, sample_crops, time_engine
from engine.runtime.load import random_network

ROOT = Path(__file__).resolve().parent.parent
#: PSNR a backend must reach against torch float32 (float16 backends; float32 ones reach far more).
MIN_PSNR_DB = 35.0


def run_tests(out: Path) -> dict:
    """The GPU tests of tests/test_runtime.py (CUDA, TensorRT, float16 schemes), logged to ``out``."""
    cmd = [
        sys.executable, "-m", "pytest", str(ROOT / "tests" / "test_runtime.py"), "-q", "-rs",
        "-k", "cuda or tensorrt or float16", "-o", "addopts=", "-p", "no:cacheprovider",
        f"--junitxml={out / 'pytest.xml'}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    (out / "pytest.log").write_text(log)
    tail = [line for line in log.strip().splitlines() if line.strip()][-1:] or [""]
    print(f"gpu_check: tests exit {proc.returncode}: {tail[0]}")
    return {"returncode": proc.returncode, "summary": tail[0]}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images, capped at 100 (identical images; JSON has no infinity)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else min(100.0, 10 * np.log10(255.0**2 / mse))


@torch.no_grad()
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and the test logs")
    parser.add_argument("--runs", type=int, default=200, help="timed engine calls per batch size (default 200)")
    parser.add_argument("--config", default="rt", help="network config to time (default rt)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    report: dict = {"machine": machine_info(), "tests": run_tests(args.out), "parity_rt": {}, "engine": {}}
    net = random_network(args.config)
    crops = sample_crops(4, net.config.crop_size, seed=1)
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0
    reference = to_uint8_nhwc(net(x).numpy())
    usable = [name for name, why in backend_status().items() if why is None]
    for name in usable:
        t0 = time.perf_counter()
        try:
            enhancer = create_enhancer(net, name)
        except Exception as exc:  # record every backend's failure and go on with the others
            report["engine"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"gpu_check: {name} failed to start: {exc}")
            continue
        load_s = time.perf_counter() - t0
        quality = psnr(enhancer.enhance(crops), reference)
        report["parity_rt"][name] = {"psnr_db": round(quality, 2), "min_psnr_db": MIN_PSNR_DB}
        gpu = name in ("cuda", "tensorrt")
        timings = {f"batch_{b}": time_engine(enhancer, b, runs=args.runs if gpu else 30).to_dict() for b in (1, 4)}
        report["engine"][name] = {"enhancer": enhancer.name, "load_s": round(load_s, 2), **timings}
        print(
            f"gpu_check: {enhancer.name:>22}: load {load_s:6.1f} s, PSNR {quality:5.1f} dB, "
            + ", ".join(f"batch {t['batch']} {t['median_ms_per_face']:.3f} ms/face (p95 {t['p95_ms_per_face']:.3f})" for t in timings.values())
        )
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
    failed_parity = [n for n, p in report["parity_rt"].items() if p["psnr_db"] < MIN_PSNR_DB]
    if failed_parity:
        print(f"gpu_check: parity below {MIN_PSNR_DB} dB: {', '.join(failed_parity)}")
    return 1 if report["tests"]["returncode"] != 0 or failed_parity else 0


if __name__ == "__main__":
    sys.exit(main())

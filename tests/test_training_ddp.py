"""The training entry point under torchrun: 2 CPU processes (gloo), every stage for a couple of steps."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.build import load_fused
from training.checkpoint import latest_checkpoint

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.skipif(not (ROOT.parent / "shared" / "faces" / "index.csv").is_file(), reason="shared faces not present")
def test_torchrun_two_processes_gloo(tmp_path: Path) -> None:
    out = tmp_path / "run"
    steps = ["--set", "pretrain.steps=2", "--set", "search.steps=2", "--set", "search.warmup=1",
             "--set", "retrain.steps=2", "--set", "retrain.bn_batches=1", "--set", f"data.cache_dir={tmp_path / 'cache'}",
             "--set", "pretrain.log_every=1", "--set", "retrain.log_every=1"]
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "--no-python", str(BIN / "nasfe-train"),
           "all", "--config", "smoke", "--out", str(out), *steps]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stage in ("pretrain", "search", "retrain"):
        with (out / stage / "log.csv").open() as f:
            rows = [int(r["step"]) for r in csv.DictReader(f)]
        assert rows == sorted(set(rows)) and rows[-1] == 2  # rank 0 alone writes the log
        assert latest_checkpoint(out / stage / "checkpoints") is not None
    net = load_fused(out / "export" / "genotype.json", out / "export" / "weights.safetensors")
    assert torch.isfinite(net(torch.rand(1, 3, 32, 32))).all()

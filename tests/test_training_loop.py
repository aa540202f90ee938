"""The stage loop: resume equals an uninterrupted run, Ctrl-C checkpoints, logs, budget, no pickle."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from training.checkpoint import latest_checkpoint, load_weights, save_weights
from training.loop import LoopSettings, StageLoop
from training.runtime import Runtime
from training.seeding import make_generator

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _toy(folder: Path, steps: int, seed: int = 3) -> tuple[StageLoop, nn.Module, callable]:
    """A linear regression whose batches come from the step-seeded generator, trained with Adam."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.Linear(8, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    w_true = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    loop = StageLoop("toy", folder, LoopSettings(steps=steps, ckpt_every=4, eval_every=5, log_every=2),
                     Runtime(), {"model": model}, {"adam": opt}, metrics=["loss"], val_metrics=["err"])

    def step(i: int) -> dict[str, float]:
        g = make_generator(seed, i)
        x = torch.randn(16, 4, generator=g)
        loss = ((model(x) - x @ w_true) ** 2).mean()  # dropout draws from the global torch RNG
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    def evaluate(i: int) -> dict[str, float]:
        x = torch.randn(64, 4, generator=make_generator(99))
        with torch.no_grad():
            model.eval()
            err = ((model(x) - x @ w_true) ** 2).mean().item()
            model.train()
        return {"err": err}

    return loop, model, step, evaluate


def test_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    full, m_full, step, ev = _toy(tmp_path / "full", steps=12)
    out = full.run(step, ev)
    assert out.step == 12 and out.reason == "steps"

    first, _, step1, ev1 = _toy(tmp_path / "split", steps=6)
    first.run(step1, ev1)
    torch.manual_seed(12345)  # a fresh process would not share the first half's global RNG
    second, m_split, step2, ev2 = _toy(tmp_path / "split", steps=12)
    assert second.resume() == 6
    second.run(step2, ev2)

    for a, b in zip(m_full.state_dict().values(), m_split.state_dict().values()):
        assert torch.equal(a, b)
    st_full = full.optimizers["adam"].state_dict()["state"]
    st_split = second.optimizers["adam"].state_dict()["state"]
    for k in st_full:
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(st_full[k][key], st_split[k][key])
    with (tmp_path / "split" / "log.csv").open() as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == sorted(set(steps)) and steps[-1] == 12
    assert (tmp_path / "split" / "curves.png").stat().st_size > 0


def test_loss_goes_down_and_val_logged(tmp_path: Path) -> None:
    loop, _, step, ev = _toy(tmp_path, steps=40)
    loop.run(step, ev)
    with (tmp_path / "log.csv").open() as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    with (tmp_path / "val.csv").open() as f:
        val = [(int(r["step"]), float(r["err"])) for r in csv.DictReader(f)]
    assert losses[-1] < losses[0]
    assert val[0][0] == 0 and val[-1][0] == 40 and val[-1][1] < val[0][1]


def test_time_budget_finishes_stage(tmp_path: Path) -> None:
    loop, _, step, ev = _toy(tmp_path, steps=1000)
    loop.settings = LoopSettings(steps=1000, max_minutes=0.0)
    out = loop.run(step, ev)
    assert out.reason == "time" and out.step == 0


def test_checkpoint_files_are_safetensors_and_json(tmp_path: Path) -> None:
    loop, _, step, ev = _toy(tmp_path, steps=4)
    loop.run(step, ev)
    ck = latest_checkpoint(tmp_path / "checkpoints")
    assert ck is not None and json.loads((ck / "state.json").read_text())["step"] == 4
    assert sorted(p.suffix for p in ck.iterdir()) == [".json", ".safetensors", ".safetensors"]
    for p in ck.glob("*.safetensors"):
        assert p.read_bytes()[8:9] == b"{"  # safetensors header, not a pickle stream


def test_load_weights_mismatch_is_user_error(tmp_path: Path) -> None:
    from engine.errors import UserError

    save_weights(tmp_path / "w.safetensors", {"": nn.Linear(3, 2)})
    with pytest.raises(UserError, match="does not match the network.*of another shape"):
        load_weights(tmp_path / "w.safetensors", {"": nn.Linear(4, 2)})
    with pytest.raises(UserError, match="no tensors under prefix 'net.'"):
        load_weights(tmp_path / "w.safetensors", {"net": nn.Linear(3, 2)})


def test_no_pickle_in_training_code() -> None:
    for path in (ROOT / "training").rglob("*.py"):
        text = path.read_text()
        assert "import pickle" not in text, path
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{path}: {line.strip()}"


_CHILD = textwrap.dedent("""
    import sys, time, torch
    from torch import nn
    from training.loop import LoopSettings, StageLoop
    from training.runtime import Runtime
    torch.set_num_threads(1)
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loop = StageLoop("sig", sys.argv[1], LoopSettings(steps=100000, ckpt_every=100000, log_every=1),
                     Runtime(), {"m": model}, {"sgd": opt}, metrics=["loss"])
    def step(i):
        time.sleep(0.01)
        return {"loss": 1.0}
    try:
        loop.run(step)
    except KeyboardInterrupt:
        sys.exit(130)
""")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_writes_checkpoint(tmp_path: Path, sig: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path)], env=env, cwd=ROOT,
                            stderr=subprocess.DEVNULL)
    log = tmp_path / "log.csv"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not log.is_file() or len(log.read_text().splitlines()) < 3):
        time.sleep(0.05)
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == 130
    ck = latest_checkpoint(tmp_path / "checkpoints")
    assert ck is not None and json.loads((ck / "state.json").read_text())["step"] >= 2

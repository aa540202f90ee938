"""End-to-end training on the smoke config: all stages, artefacts, resume, Ctrl-C, CLI errors."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from engine.build import load_fused
from engine.configs import get_config
from training.checkpoint import latest_checkpoint
from training.cli import main
from training.stages.common import cosine_lr, set_lr
from training.stages.retrain import _param_groups

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT.parent / "shared" / "faces"

pytestmark = pytest.mark.skipif(not (FACES / "index.csv").is_file(), reason="shared faces not present")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _args(out: Path, cache: Path, *extra: str) -> list[str]:
    return ["--out", str(out), "--set", f"data.cache_dir={cache}", *extra]


def _column(path: Path, name: str) -> list[float]:
    with path.open(newline="") as f:
        return [float(r[name]) for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, cache_dir: Path) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("smoke") / "run"
    assert main(["all", "--config", "smoke", *_args(out, cache_dir)]) == 0
    return out


def test_smoke_artefacts_load_into_fused_network(smoke_run: Path) -> None:
    export = smoke_run / "export"
    net = load_fused(export / "genotype.json", export / "weights.safetensors")
    cfg = get_config("smoke")
    x = torch.rand(2, 3, cfg.crop_size, cfg.crop_size)
    assert net(x).shape == x.shape
    assert (smoke_run / "best" / "genotype.json").read_text() == (export / "genotype.json").read_text()
    for stage in ("pretrain", "search", "retrain"):
        assert (smoke_run / stage / "curves.png").stat().st_size > 0
        assert latest_checkpoint(smoke_run / stage / "checkpoints") is not None
    assert (smoke_run / "derive" / "alpha.png").is_file()
    collapse = json.loads((smoke_run / "search" / "collapse.json").read_text())
    assert "final" in collapse and "events" in collapse


def test_smoke_training_improves(smoke_run: Path) -> None:
    loss = _column(smoke_run / "pretrain" / "log.csv", "loss")
    assert loss[-1] < loss[0]
    val = _column(smoke_run / "retrain" / "val.csv", "psnr")
    assert max(val[1:]) > val[0]
    best = json.loads((latest_checkpoint(smoke_run / "retrain" / "checkpoints") / "state.json").read_text())
    assert best["state"]["best_psnr"] == pytest.approx(max(val[1:]), abs=1e-3)


def test_all_resume_on_finished_run_is_a_no_op(smoke_run: Path, cache_dir: Path) -> None:
    before = (smoke_run / "export" / "weights.safetensors").read_bytes()
    rows = len(_column(smoke_run / "retrain" / "log.csv", "step"))
    assert main(["all", "--resume", "--from", "retrain", *_args(smoke_run, cache_dir)]) == 0
    assert (smoke_run / "export" / "weights.safetensors").read_bytes() == before
    assert len(_column(smoke_run / "retrain" / "log.csv", "step")) == rows


def test_retrain_init_fine_tunes_given_weights(smoke_run: Path, tmp_path: Path, cache_dir: Path, capsys) -> None:
    """``retrain.init`` starts a run folder holding only config + genotype from fused weights: its
    step-0 validation is the source's best, and it exports."""
    torch.set_num_threads(1)
    out = tmp_path / "finetune"
    out.mkdir()
    for name in ("config.json", "genotype.json"):
        shutil.copy(smoke_run / name, out / name)
    missing = tmp_path / "nope.safetensors"
    assert main(["retrain", "--resume", *_args(out, cache_dir), "--set", f"retrain.init={missing}"]) == 2
    assert capsys.readouterr().err.strip().endswith(f"retrain.init: weights file {missing} not found")
    init = smoke_run / "best" / "weights.safetensors"
    saved = (out / "config.json").read_text()
    assert main(["retrain", "--resume", *_args(out, cache_dir), "--set", f"retrain.init={init}", "--set", "retrain.lr_warmup=-1"]) == 2
    assert capsys.readouterr().err.strip().endswith("config retrain.lr_warmup: expected >= 0 steps, got -1")
    assert (out / "config.json").read_text() == saved  # rejected before it was written: --resume does not inherit it
    assert main(["all", "--resume", "--from", "retrain", *_args(out, cache_dir), "--set", f"retrain.init={init}", "--set", "retrain.steps=2",
                 "--set", "retrain.lr_warmup=1"]) == 0
    assert load_fused(out / "export" / "genotype.json", out / "export" / "weights.safetensors") is not None
    best = json.loads((latest_checkpoint(smoke_run / "retrain" / "checkpoints") / "state.json").read_text())
    assert _column(out / "retrain" / "val.csv", "psnr")[0] == pytest.approx(best["state"]["best_psnr"], abs=1e-3)
    assert (out / "retrain" / "weights.safetensors").read_bytes() != init.read_bytes()


def test_resume_equals_uninterrupted(tmp_path: Path, cache_dir: Path) -> None:
    """Pretrain 6 steps at once vs 3 steps + --resume to 6: same weights, optimiser state, log."""
    torch.set_num_threads(1)
    base = ["--config", "smoke", "--set", "pretrain.ckpt_every=3", "--set", "pretrain.log_every=1"]
    assert main(["pretrain", *base, "--set", "pretrain.steps=6", *_args(tmp_path / "a", cache_dir)]) == 0
    assert main(["pretrain", *base, "--set", "pretrain.steps=3", *_args(tmp_path / "b", cache_dir)]) == 0
    assert main(["pretrain", "--resume", *base, "--set", "pretrain.steps=6", *_args(tmp_path / "b", cache_dir)]) == 0
    ca, cb = (latest_checkpoint(tmp_path / r / "pretrain" / "checkpoints") for r in "ab")
    assert json.loads((ca / "state.json").read_text())["step"] == 6 == json.loads((cb / "state.json").read_text())["step"]
    for name in ("model.safetensors", "optim.safetensors"):
        ta, tb = load_file(str(ca / name)), load_file(str(cb / name))
        assert ta.keys() == tb.keys()
        for k in ta:
            if not k.startswith("rng/"):
                assert torch.equal(ta[k], tb[k]), k
    la, lb = (_column(tmp_path / r / "pretrain" / "log.csv", "loss") for r in "ab")
    assert la == lb


def test_ctrl_c_checkpoints_and_resume_continues(tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [str(Path(sys.executable).parent / "nasfe-train"), "pretrain", "--config", "smoke", "--set", "pretrain.steps=100000",
           "--set", "pretrain.ckpt_every=100000", "--set", "pretrain.log_every=1", "--set", "pretrain.eval_every=0",
           *_args(out, cache_dir)]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = out / "pretrain" / "log.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not log.is_file() or len(log.read_text().splitlines()) < 4):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()[-2000:]
    ck = latest_checkpoint(out / "pretrain" / "checkpoints")
    step = json.loads((ck / "state.json").read_text())["step"]
    assert step >= 3
    torch.set_num_threads(1)
    assert main(["pretrain", "--resume", "--set", f"pretrain.steps={step + 2}", *_args(out, cache_dir)]) == 0
    assert _column(log, "step")[-1] == step + 2


def test_cli_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert main(["pretrain", "--out", str(tmp_path / "x"), "--resume"]) == 2
    assert "config" in capsys.readouterr().err
    assert main(["pretrain", "--config", "smoke", "--out", str(tmp_path / "y"), "--set", "pretrain.stepz=3"]) == 2
    assert "unknown key(s) ['stepz']" in capsys.readouterr().err
    assert main(["search", "--config", "smoke", "--out", str(tmp_path / "v"), "--set", "search.batch=0"]) == 2
    assert capsys.readouterr().err.strip().endswith("config search.batch: expected >= 1, got 0")
    assert not (tmp_path / "v").exists()
    assert main(["pretrain", "--config", "nope", "--out", str(tmp_path / "z")]) == 2
    assert "no run config 'nope'" in capsys.readouterr().err
    assert main(["search", "--config", "smoke", "--out", str(tmp_path / "w")]) == 2
    assert "run the pretrain stage first" in capsys.readouterr().err


def test_search_collapse_freezes_architecture(tmp_path: Path, cache_dir: Path) -> None:
    """A guard that sees collapse everywhere (limit below 0) must undo the first α step and freeze."""
    from engine.build import build_supernet
    from training.seeding import derive_seed, stream_id

    torch.set_num_threads(1)
    out = tmp_path / "run"
    tiny = ["--set", "pretrain.steps=1", "--set", "search.steps=3", "--set", "search.warmup=1",
            "--set", "search.collapse.max_param_free=-0.01", "--set", "search.eval_every=0",
            "--set", "search.log_every=1"]
    assert main(["all", "--config", "smoke", "--until", "search", *tiny, *_args(out, cache_dir)]) == 0
    report = json.loads((out / "search" / "collapse.json").read_text())
    assert report["frozen_at"] == 2 and [e["action"] for e in report["events"]] == ["freeze"]
    searched = load_file(str(out / "search" / "supernet.safetensors"))
    initial = build_supernet("smoke", seed=derive_seed(0, stream_id("init-search")))
    assert torch.equal(searched["fusion.alpha"], initial.fusion.alpha.detach())
    with (out / "search" / "log.csv").open() as f:
        shares = [r["free_share"] for r in csv.DictReader(f)]
    assert shares[0] == "" and shares[1] != "" and shares[2] == ""  # warm-up, one α step, frozen


def test_cosine_lr_warms_up_linearly_then_follows_the_cosine() -> None:
    lr, final, total = 1e-3, 1e-5, 100
    plain = [cosine_lr(i, total, lr, final) for i in range(total + 1)]
    warm = [cosine_lr(i, total, lr, final, warmup=10) for i in range(total + 1)]
    assert plain[0] == pytest.approx(lr) and plain[-1] == pytest.approx(final)
    assert all(a > b for a, b in zip(plain, plain[1:]))
    assert warm[0] == pytest.approx(plain[0] / 10)  # a tenth of the step, not a full-size jolt
    assert all(a < b for a, b in zip(warm[:10], warm[1:10]))
    assert warm[9:] == plain[9:]  # from the end of the ramp on, the same cosine
    with pytest.raises(ValueError, match="warmup"):
        cosine_lr(0, total, lr, final, warmup=-1)


def test_parameters_new_to_the_init_weights_train_at_the_scaled_rate() -> None:
    """``retrain.new_lr_scale``: a part the init file lacked gets its own Adam group at ``scale * lr``;
    the schedule keeps the ratio at every step."""
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    opt = torch.optim.Adam(_param_groups(model, ["1.weight", "1.bias", "running_mean"], 10.0), lr=1e-3)
    assert [len(g["params"]) for g in opt.param_groups] == [2, 2]
    assert opt.param_groups[1]["params"][0] is model[1].weight
    for lr in (1e-3, 3e-5):
        set_lr(opt, lr)
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([lr, 10 * lr])
    assert len(_param_groups(model, [], 10.0)) == 1
    assert len(_param_groups(model, ["running_mean"], 10.0)) == 1

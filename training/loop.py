"""The step loop every stage shares: resume, progress bar, CSV logs, curves, checkpoints, stopping.

A stage builds its models, optimisers and data, then hands :class:`StageLoop` two callables:
``step_fn(step) -> {metric: float}`` (one optimisation step; the loop never sees a tensor of the
model) and optionally ``eval_fn(step) -> {metric: float}`` (rank 0 only). The loop owns everything
around them:

- resume from ``<stage>/checkpoints`` (``--resume``), with modules, optimisers, RNG and the stage's
  JSON state restored; data order is a pure function of the step (see :mod:`training.data`), so a
  resumed run sees the same batches as an uninterrupted one;
- a checkpoint every ``ckpt_every`` steps, at the end, and on SIGINT / SIGTERM (then it raises
  :class:`KeyboardInterrupt`, which the CLI turns into exit code 130);
- a time budget ``max_minutes`` per stage, summed over sessions: reaching it ends the stage like
  reaching ``steps`` does;
- ``log.csv`` (mean of each metric over ``log_every`` steps, it/s), ``val.csv`` and ``curves.png``
  in the stage folder (curves redrawn at checkpoints at most once a minute, and at the end), and a
  tqdm bar with the smoothed loss and it/s.

Under ``torchrun`` every rank runs the loop; rank 0 alone writes files, and the ranks agree on when
to stop (a signal or the clock on any rank stops all of them at the same step).
"""

from __future__ import annotations

import csv
import math
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from training.plots import plot_stage_curves
from training.runtime import Runtime

__all__ = ["LoopSettings", "LoopOutcome", "StageLoop", "stop_signals"]

#: Shortest wall time between two refreshes of ``curves.png`` (it is always drawn at the end).
PLOT_EVERY_S = 60.0

StepFn = Callable[[int], dict[str, float]]
EvalFn = Callable[[int], dict[str, float]]


@dataclass(frozen=True)
class LoopSettings:
    """How long a stage runs and how often it saves, logs and evaluates (all in steps).

    Attributes:
        steps: optimisation steps of the whole stage.
        ckpt_every: steps between checkpoints.
        eval_every: steps between validations (0 = never).
        log_every: steps averaged into one ``log.csv`` row.
        max_minutes: training-time budget of the stage summed over sessions (``None`` = no budget).
        keep: checkpoints kept on disk.
    """

    steps: int
    ckpt_every: int = 500
    eval_every: int = 500
    log_every: int = 10
    max_minutes: float | None = None
    keep: int = 2

    def __post_init__(self) -> None:
        if self.steps < 0 or self.ckpt_every < 1 or self.log_every < 1 or self.eval_every < 0:
            raise ValueError(f"bad loop settings: {self}")


@dataclass
class LoopOutcome:
    """How a stage's loop ended: ``reason`` is ``"steps"`` or ``"time"`` (both mean finished)."""

    step: int
    reason: str
    elapsed_s: float
    state: dict[str, Any] = field(default_factory=dict)


class _StopFlag:
    """Set by SIGINT/SIGTERM; a second signal while set interrupts at once."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum


@contextmanager
def stop_signals() -> Iterator[_StopFlag]:
    """Catch SIGINT and SIGTERM for the duration; yields the flag the loop polls after each step."""
    flag = _StopFlag()
    previous = {s: signal.signal(s, flag) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class _CsvLog:
    """Append-only CSV with a fixed header; on resume rows past the checkpoint step are dropped."""

    def __init__(self, path: Path, columns: Sequence[str], resume_step: int | None) -> None:
        self.path = path
        self.columns = list(columns)
        keep: list[dict[str, str]] = []
        if resume_step is not None and path.is_file():
            with path.open(newline="") as f:
                keep = [r for r in csv.DictReader(f) if int(float(r["step"])) <= resume_step]
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, self.columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(keep)

    def write(self, row: dict[str, float]) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.columns, extrasaction="ignore").writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


class StageLoop:
    """Runs one stage's steps with checkpoints, logs and graceful stopping.

    Args:
        name: stage name, shown on the progress bar.
        folder: the stage folder (``runs/NAME/<stage>``); created by rank 0.
        settings: lengths and intervals.
        runtime: process placement (rank 0 writes).
        modules: unwrapped modules to checkpoint, by name.
        optimizers: optimisers to checkpoint, by name.
        metrics: names of the training metrics ``step_fn`` may return (the ``log.csv`` columns);
            the first one is shown on the progress bar.
        val_metrics: names of the metrics ``eval_fn`` returns (``val.csv`` columns).
        scaler: fp16 gradient scaler, checkpointed with the rest.
    """

    def __init__(
        self,
        name: str,
        folder: Path,
        settings: LoopSettings,
        runtime: Runtime,
        modules: dict[str, nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        metrics: Sequence[str],
        val_metrics: Sequence[str] = (),
        scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        self.name = name
        self.folder = Path(folder)
        self.settings = settings
        self.runtime = runtime
        self.modules = modules
        self.optimizers = optimizers
        self.metrics = list(metrics)
        self.val_metrics = list(val_metrics)
        self.scaler = scaler
        #: The stage's JSON state, saved in every checkpoint and restored on resume.
        self.state: dict[str, Any] = {}
        self.step = 0
        self.elapsed_s = 0.0
        self._resumed_at: int | None = None
        self._time_up = False
        self._plotted = time.monotonic()
        if runtime.is_main:
            self.folder.mkdir(parents=True, exist_ok=True)

    @property
    def ckpt_root(self) -> Path:
        return self.folder / "checkpoints"

    def has_checkpoint(self) -> bool:
        return latest_checkpoint(self.ckpt_root) is not None

    def resume(self) -> int:
        """Load the latest checkpoint if there is one; returns the step to continue from."""
        folder = latest_checkpoint(self.ckpt_root)
        if folder is None:
            return 0
        ck = load_checkpoint(folder, self.modules, self.optimizers, self.scaler)
        self.step, self.elapsed_s, self.state = ck.step, ck.elapsed_s, ck.state
        self._resumed_at = ck.step
        return ck.step

    def finished(self) -> bool:
        """True once ``steps`` are done or the time budget is spent."""
        return self.step >= self.settings.steps or self._time_up

    def _over_budget(self) -> bool:
        m = self.settings.max_minutes
        return m is not None and self.elapsed_s >= 60.0 * m

    def save(self) -> None:
        """Checkpoint now (rank 0 writes; all ranks must call it together)."""
        if self.runtime.is_main:
            save_checkpoint(self.ckpt_root, self.step, self.elapsed_s, self.modules, self.optimizers,
                            self.scaler, self.state, keep=self.settings.keep)
        self.runtime.barrier()

    def run(self, step_fn: StepFn, eval_fn: EvalFn | None = None) -> LoopOutcome:
        """Step until finished; checkpoint and raise ``KeyboardInterrupt`` on SIGINT/SIGTERM."""
        s, rt = self.settings, self.runtime
        self._time_up = self._over_budget()
        log = val = None
        if rt.is_main:
            log = _CsvLog(self.folder / "log.csv", ["step", "elapsed_s", "it_s", *self.metrics],
                          self._resumed_at)
            if self.val_metrics and eval_fn is not None:
                val = _CsvLog(self.folder / "val.csv", ["step", *self.val_metrics], self._resumed_at)
        if val is not None and self.step == 0 and s.eval_every and not self.finished():
            self._evaluate(eval_fn, val)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        smooth = math.nan
        bar = tqdm(total=s.steps, initial=min(self.step, s.steps), desc=self.name, unit="it",
                   dynamic_ncols=True, disable=not rt.is_main, mininterval=1.0)
        t_log, n_log = time.perf_counter(), 0
        try:
            with stop_signals() as flag:
                while not self.finished():
                    t0 = time.perf_counter()
                    out = step_fn(self.step)
                    self.step += 1
                    n_log += 1
                    for k, v in out.items():
                        sums[k] = sums.get(k, 0.0) + float(v)
                        counts[k] = counts.get(k, 0) + 1
                    head = out.get(self.metrics[0]) if self.metrics else None
                    if head is not None and math.isfinite(head):
                        smooth = head if math.isnan(smooth) else 0.9 * smooth + 0.1 * head
                    bar.update(1)
                    self.elapsed_s += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    stop, self._time_up = rt.any_of([flag.signum is not None, self._over_budget()])
                    last = self.finished()
                    if self.step % s.log_every == 0 or last:
                        now = time.perf_counter()
                        row: dict[str, float] = self._reduce_means(sums, counts)
                        row.update(step=self.step, elapsed_s=round(self.elapsed_s, 2),
                                   it_s=n_log / max(now - t_log, 1e-9))
                        if log is not None:
                            log.write(row)
                        bar.set_postfix({self.metrics[0] if self.metrics else "loss": f"{smooth:.4g}"})
                        sums, counts, t_log, n_log = {}, {}, now, 0
                    if val is not None and s.eval_every and (self.step % s.eval_every == 0 or last):
                        self._evaluate(eval_fn, val)
                    self.elapsed_s += time.perf_counter() - t0
                    if stop or last or self.step % s.ckpt_every == 0:
                        self.save()
                        if time.monotonic() - self._plotted >= PLOT_EVERY_S:
                            self._plot()
                    if stop:
                        raise KeyboardInterrupt
        finally:
            bar.close()
        self._plot()
        reason = "steps" if self.step >= s.steps else "time"
        return LoopOutcome(step=self.step, reason=reason, elapsed_s=self.elapsed_s, state=self.state)

    def _reduce_means(self, sums: dict[str, float], counts: dict[str, int]) -> dict[str, float]:
        """Mean of each metric over the interval and over ranks (all ranks call this together)."""
        names = self.metrics
        values = torch.tensor([sums.get(k, 0.0) for k in names] + [float(counts.get(k, 0)) for k in names],
                              dtype=torch.float64)
        values = self.runtime.mean(values)
        n = len(names)
        return {k: float(values[i] / values[n + i]) for i, k in enumerate(names) if values[n + i] > 0}

    def _evaluate(self, eval_fn: EvalFn, val: _CsvLog) -> None:
        metrics = eval_fn(self.step)
        val.write({"step": self.step, **metrics})
        tqdm.write(f"[{self.name}] step {self.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))

    def _plot(self) -> None:
        if self.runtime.is_main:
            plot_stage_curves(self.folder, title=self.name)
        self._plotted = time.monotonic()

"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

One checkpoint is a folder ``<stage>/checkpoints/step_00000120/`` holding

- ``model.safetensors``: every module's ``state_dict``, keys prefixed ``"<module name>."``;
- ``optim.safetensors``: optimiser tensors (Adam moments, step counts), keys
  ``"<optimiser name>/<param index>/<key>"``, plus the torch RNG states (``"rng/..."``, uint8);
- ``state.json``: step, elapsed seconds, optimiser hyper-parameters (param groups), the gradient
  scaler and the stage's own JSON state.

``checkpoints/latest.json`` names the newest complete folder. It is replaced atomically after the
folder is fully written, so a crash mid-save leaves the previous checkpoint in force.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from engine.build import load_weights as load_module_weights
from engine.errors import UserError

__all__ = [
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "save_weights",
    "load_weights",
    "write_json",
]

_LATEST = "latest.json"


@dataclass
class Checkpoint:
    """What a stage gets back when it resumes.

    Attributes:
        step: number of optimisation steps already taken.
        elapsed_s: training seconds spent in this stage over all sessions so far.
        state: the stage's own JSON state (e.g. best validation PSNR).
        folder: the checkpoint folder it came from.
    """

    step: int
    elapsed_s: float
    state: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename) so readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def save_weights(path: Path, modules: dict[str, nn.Module], metadata: dict[str, str] | None = None) -> None:
    """Save the ``state_dict`` of several modules into one safetensors file, keys ``name.param``.

    A module named ``""`` is saved without prefix (the file then loads straight into it).
    """
    tensors: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        prefix = f"{name}." if name else ""
        for key, value in module.state_dict().items():
            tensors[prefix + key] = value.detach().to("cpu").clone().contiguous()
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def load_weights(path: Path, modules: dict[str, nn.Module]) -> None:
    """Inverse of :func:`save_weights`: fill each module from its prefixed keys, strictly.

    Raises:
        UserError: missing/corrupt file, or a module whose keys or shapes do not match.
    """
    for name, module in modules.items():
        load_module_weights(module, path, prefix=f"{name}." if name else "")


def _optimizer_split(opt: torch.optim.Optimizer, name: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimiser state -> (tensors for safetensors, JSON-able rest)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}/{idx}/{key}"] = value.detach().to("cpu").clone().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_join(opt: torch.optim.Optimizer, name: str, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(f"{name}/"):
            _, idx, sub = key.split("/", 2)
            state.setdefault(int(idx), {})[sub] = value
    for idx, st in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(st)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _rng_tensors() -> dict[str, torch.Tensor]:
    out = {"rng/cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng/cuda{i}"] = st
    return out


def _rng_restore(tensors: dict[str, torch.Tensor]) -> None:
    if "rng/cpu" in tensors:
        torch.set_rng_state(tensors["rng/cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng/cuda")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(
    root: Path,
    step: int,
    elapsed_s: float,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    scaler: torch.amp.GradScaler | None = None,
    state: dict[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write checkpoint ``root/step_XXXXXXXX`` and point ``root/latest.json`` at it.

    Args:
        root: the stage's checkpoints folder (created if missing).
        step: optimisation steps taken so far.
        elapsed_s: stage training time so far, in seconds.
        modules: unwrapped modules (not the DDP wrapper) by name.
        optimizers: optimisers by name.
        scaler: fp16 gradient scaler, if any.
        state: JSON-serialisable stage state.
        keep: how many newest checkpoints to keep; older ones are deleted.

    Returns:
        The checkpoint folder.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp_step_{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_weights(tmp / "model.safetensors", modules)
    opt_tensors: dict[str, torch.Tensor] = _rng_tensors()
    opt_meta: dict[str, dict] = {}
    for name, opt in optimizers.items():
        t, meta = _optimizer_split(opt, name)
        opt_tensors.update(t)
        opt_meta[name] = meta
    save_file(opt_tensors, str(tmp / "optim.safetensors"))
    write_json(tmp / "state.json", {
        "step": step,
        "elapsed_s": elapsed_s,
        "optimizers": opt_meta,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "state": state or {},
    })
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    write_json(root / _LATEST, {"folder": final.name, "step": step})
    done = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in done[:-keep] if keep > 0 else []:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    """The folder ``root/latest.json`` points at, or ``None`` when nothing was saved yet."""
    pointer = Path(root) / _LATEST
    if not pointer.is_file():
        return None
    folder = Path(root) / json.loads(pointer.read_text())["folder"]
    return folder if (folder / "state.json").is_file() else None


def load_checkpoint(
    folder: Path,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    scaler: torch.amp.GradScaler | None = None,
    restore_rng: bool = True,
) -> Checkpoint:
    """Restore modules, optimisers, scaler and torch RNG from ``folder``; return step and state."""
    folder = Path(folder)
    meta = json.loads((folder / "state.json").read_text())
    load_weights(folder / "model.safetensors", modules)
    tensors = load_file(str(folder / "optim.safetensors"))
    for name, opt in optimizers.items():
        if name not in meta["optimizers"]:
            raise UserError(f"checkpoint {folder} has no optimiser {name!r}")
        _optimizer_join(opt, name, tensors, meta["optimizers"][name])
    if scaler is not None and scaler.is_enabled() and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    if restore_rng:
        _rng_restore(tensors)
    return Checkpoint(step=int(meta["step"]), elapsed_s=float(meta["elapsed_s"]),
                      state=meta.get("state", {}), folder=folder)

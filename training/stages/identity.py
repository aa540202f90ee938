"""The run's table of per-photo identity maps and embeddings (:class:`engine.identity.ReferenceTable`).

Every training photo goes through the frozen dlib ResNet once: its ``instnorm(level2)`` map (the
identity prior is the mean of these over a sample's references) and its unit embedding (the
identity loss compares the restored face against the references' embeddings). The table is cached
next to the face cache (``faces_<key>.npy`` -> ``refs_<key>.safetensors``), built by rank 0.
"""

from __future__ import annotations

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from engine.identity import IdentityEncoder, ReferenceTable
from engine.recognition.dlib_resnet import load_dlib_resnet
from training.batches import Batch
from training.data import resolve_path
from training.stages.context import RunContext

__all__ = ["reference_table", "loss_references"]


def reference_table(ctx: RunContext) -> ReferenceTable:
    """The face set's reference table, built once per face cache and crop size."""
    if "refs" in ctx.memo:
        return ctx.memo["refs"]
    faces, rt = ctx.faces, ctx.runtime
    path = resolve_path(ctx.cfg.data.cache_dir) / f"refs_{faces.key}.safetensors"
    if rt.is_main and not path.is_file():
        encoder = IdentityEncoder(load_dlib_resnet(device=rt.device), crop_size=faces.crop_size).to(rt.device)
        table = ReferenceTable.build(faces.model_crops(), encoder, batch_size=64, device=rt.device)
        tmp = path.with_name(path.name + ".tmp")
        save_file({"maps": table.maps.contiguous(), "vectors": table.vectors.contiguous()}, str(tmp))
        tmp.replace(path)
    rt.barrier()
    tensors = load_file(str(path))
    ctx.memo["refs"] = table = ReferenceTable(tensors["maps"], tensors["vectors"])
    return table


def loss_references(table: ReferenceTable, batch: Batch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference embeddings for the identity loss: the sample's references, or for a sample trained
    without identity prior its own clean photo (the paper's loss needs some clean face of the person).

    Returns:
        ``(B, n, 128)`` unit embeddings and ``(B, n)`` bool presence mask.
    """
    refs = batch.refs.copy()
    empty = refs[:, 0] < 0
    refs[empty, 0] = np.asarray(batch.targets)[empty]
    return table.embeddings(refs, device)

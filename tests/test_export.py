"""ONNX export of a derived network: the CLI, onnxruntime parity, no DFT node, explicit optional inputs."""

from __future__ import annotations

import onnx
import onnxruntime as ort
import pytest
import torch

from engine.build import build_supernet, derive_fused, save_fused
from engine.export import FORBIDDEN_OPS, INPUT_NAMES, OUTPUT_NAMES, onnx_op_types
from engine.genotype import BlockGene, Genotype
from training.cli import main as train_main

torch.set_num_threads(1)

# fft_op (matmul DFT), self_attention (dynamic batch reshapes), level changes (resize/pool).
GENOTYPE = Genotype(
    "smoke",
    (BlockGene((0, 1), ("fft_op", "self_attention")), BlockGene((1, 2), ("res2block", "deveil"))),
    (1, 1, 0),
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One export through the CLI (slow part: ~10-30 s), shared by the checks below."""
    folder = tmp_path_factory.mktemp("export")
    sn = build_supernet("smoke", seed=4)
    net = derive_fused(sn, GENOTYPE).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # non-trivial BN statistics and an active identity projection
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.75, 1.25, generator=g)
        net.identity_branch.proj.weight.normal_(0, 0.1, generator=g)
        net.identity_branch.neutral.normal_(generator=g)
    GENOTYPE.save(folder / "genotype.json")
    save_fused(net, folder / "weights.safetensors")
    out = folder / "smoke.onnx"
    code = train_main([
        "export", "--genotype", str(folder / "genotype.json"), "--weights", str(folder / "weights.safetensors"),
        "--format", "onnx", "-o", str(out),
    ])
    assert code == 0
    return net, out


def _run(path, image, prior, has_prior, identity, has_identity):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = dict(zip(INPUT_NAMES, (t.numpy() for t in (image, prior, has_prior, identity, has_identity))))
    return [torch.from_numpy(a) for a in session.run(list(OUTPUT_NAMES), feeds)]


def test_graph_has_no_dft_and_records_the_network(exported):
    _, path = exported
    types = onnx_op_types(path)
    assert "MatMul" in types and not types & FORBIDDEN_OPS
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["nasfe.config"] == "smoke" and Genotype.from_json(meta["nasfe.genotype"]) == GENOTYPE
    assert [i.name for i in onnx.load(str(path)).graph.input] == list(INPUT_NAMES)


@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_matches_pytorch(exported, batch):
    net, path = exported
    g = torch.Generator().manual_seed(batch)
    image = torch.rand(batch, 3, 32, 32, generator=g)
    prior = torch.rand(batch, 3, generator=g)
    identity = torch.randn(batch, 128, 5, 5, generator=g)
    has_prior = torch.tensor([1.0, 0.0, 1.0][:batch])
    has_identity = torch.tensor([0.0, 1.0, 1.0][:batch])
    restored, probabilities = _run(path, image, prior, has_prior, identity, has_identity)
    with torch.no_grad():
        want_probs = net.classify(image)
        for i in range(batch):
            p = prior[i : i + 1] if has_prior[i] else None
            ident = identity[i : i + 1] if has_identity[i] else None
            want = net(image[i : i + 1], p, ident)
            torch.testing.assert_close(restored[i : i + 1], want, atol=1e-4, rtol=0)
    torch.testing.assert_close(probabilities, want_probs, atol=1e-4, rtol=0)


def test_export_errors_are_one_line(tmp_path, capsys):
    GENOTYPE.save(tmp_path / "genotype.json")
    code = train_main([
        "export", "--genotype", str(tmp_path / "genotype.json"), "--weights", str(tmp_path / "missing.safetensors"),
        "-o", str(tmp_path / "x.onnx"),
    ])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "missing.safetensors" in err

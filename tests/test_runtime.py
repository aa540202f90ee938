"""Inference runtime: every backend against torch float32, selection, loading, the artefact cache.

Networks are random-weight (``engine.runtime.load.random_network``): the architecture a fresh
supernet derives, with every branch switched on, so outputs differ from the inputs and depend on the
prior. The ``smoke`` config has every operator (FFT and attention included) and exports in seconds.
GPU backends are tested only where torch sees a GPU (``scripts/gpu_check.sh`` runs them).
"""

from __future__ import annotations

import dataclasses
import logging
import re

import numpy as np
import pytest
import torch

from engine.build import build_fused, build_supernet, save_fused
from engine.errors import UserError
from engine.runtime import BACKENDS, create_enhancer, default_threads, load_enhancer, load_network
from engine.runtime import load as load_module
from engine.runtime import select
from engine.runtime.base import to_uint8_nhwc
from engine.runtime.benchmark import sample_crops, time_engine
from engine.runtime.cache import ArtifactCache, key_digest, network_digest
from engine.runtime.graph import InferenceGraph, example_graph_inputs
from engine.runtime.load import random_network
from engine.runtime.onnx_backend import OnnxRuntimeEnhancer
from engine.runtime.tensorrt_backend import TensorRTEnhancer
from engine.runtime.torch_backend import TorchEnhancer

torch.set_num_threads(1)

HAS_CUDA = torch.cuda.is_available()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def net():
    return random_network("smoke", seed=1)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("nasfe-cache")


@pytest.fixture(scope="module")
def crops(net):
    return sample_crops(3, net.config.crop_size, seed=2)


@pytest.fixture(scope="module")
def identity(net):
    cfg = net.config
    return np.random.default_rng(3).normal(size=(cfg.id_channels, cfg.id_size, cfg.id_size)).astype(np.float32)


PRIOR = np.array([[1, 0, 0], [0, 1, 0.5], [0.2, 0.3, 1]], np.float32)


@torch.no_grad()
def reference(net, crops, prior=None, identity=None) -> np.ndarray:
    """The network's own forward in float32: the ground truth every backend is held to."""
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0
    p = None if prior is None else torch.from_numpy(prior)
    i = None if identity is None else torch.from_numpy(identity)[None]
    return to_uint8_nhwc(net(x, p, i).numpy())


CASES = ["plain", "prior", "identity", "both"]


def case_args(case, identity):
    return {
        "plain": (None, None),
        "prior": (PRIOR, None),
        "identity": (None, identity),
        "both": (PRIOR, identity),
    }[case]


def test_reference_network_is_not_trivial(net, crops, identity):
    """The parity tests mean something only if the network changes the image and reads its inputs."""
    out = reference(net, crops)
    assert psnr(out, crops) < 30  # far from the identity
    assert np.mean((out == 0) | (out == 255)) < 0.2  # mostly unclipped
    assert psnr(reference(net, crops, PRIOR), out) < 45  # the prior changes the result
    with torch.no_grad():  # the identity prior reaches the output (too little to show in uint8)
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0
        assert not torch.equal(net(x), net(x, identity=torch.from_numpy(identity)[None]))


# -- parity with torch float32 ------------------------------------------------------------------


def cpu_backend(name, net, cache_dir):
    if name == "torch":
        return TorchEnhancer(net, channels_last=True)
    if name == "onnxruntime":
        pytest.importorskip("onnxruntime")
        return OnnxRuntimeEnhancer(net, threads=1, cache_dir=cache_dir)
    pytest.importorskip("openvino")
    from engine.runtime.openvino_backend import OpenVinoEnhancer

    return OpenVinoEnhancer(net, threads=1, cache_dir=cache_dir, precision="fp32")


@pytest.mark.parametrize("name", ["torch", "onnxruntime", "openvino"])
def test_fp32_backend_matches_torch(name, net, cache_dir, crops, identity):
    enhancer = cpu_backend(name, net, cache_dir)
    for case in CASES:
        prior, ident = case_args(case, identity)
        out = enhancer.enhance(crops, prior, ident)
        assert out.shape == crops.shape and out.dtype == np.uint8
        assert psnr(out, reference(net, crops, prior, ident)) >= 45, (name, case)


def test_openvino_bfloat16_within_reduced_precision_bound(net, cache_dir, crops, identity):
    pytest.importorskip("openvino")
    from engine.runtime.openvino_backend import OpenVinoEnhancer

    enhancer = OpenVinoEnhancer(net, threads=1, cache_dir=cache_dir, precision="bf16")
    assert enhancer.name == "openvino-cpu-bf16"
    for case in CASES:
        prior, ident = case_args(case, identity)
        assert psnr(enhancer.enhance(crops, prior, ident), reference(net, crops, prior, ident)) >= 35, case


def test_float16_graph_keeps_psnr(net, crops):
    """The explicit-half graph TensorRT compiles (FFT step in float32) stays close to float32."""
    g32, g16 = InferenceGraph(net), InferenceGraph(net, torch.float16)
    assert next(g16.parameters()).dtype == torch.float16
    args = [torch.from_numpy(a) for a in TorchEnhancer(net).pack(crops, PRIOR, None).arrays().values()]
    with torch.no_grad():
        y32, y16 = g32(*args), g16(*args)
    assert y16.dtype == torch.float32 and torch.isfinite(y16).all()
    assert psnr(to_uint8_nhwc(y16.numpy()), to_uint8_nhwc(y32.numpy())) >= 35


def test_float16_autocast_keeps_psnr(net, crops, identity):
    """The cuda backend's precision scheme (float16 autocast, FFT step float32), run on the CPU."""
    enhancer = TorchEnhancer(net, precision="fp16")
    for case in CASES:
        prior, ident = case_args(case, identity)
        assert psnr(enhancer.enhance(crops, prior, ident), reference(net, crops, prior, ident)) >= 35, case


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("batch", [1, 2, 3, 4, 6])
def test_cuda_backend_matches_torch(batch, net, identity):
    crops = sample_crops(batch, net.config.crop_size, seed=4)
    enhancer = create_enhancer(net, "cuda")
    assert enhancer.name == "torch-cuda-fp16"
    prior = np.tile(PRIOR[:1], (batch, 1))
    for p, i in ((None, None), (prior, identity)):
        assert psnr(enhancer.enhance(crops, p, i), reference(net, crops, p, i)) >= 35


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_tensorrt_backend_matches_torch_and_caches(tmp_path, net, crops, identity):
    pytest.importorskip("torch_tensorrt")
    first = create_enhancer(net, "tensorrt", cache_dir=tmp_path)
    for case in CASES:
        prior, ident = case_args(case, identity)
        assert psnr(first.enhance(crops, prior, ident), reference(net, crops, prior, ident)) >= 35, case
    second = create_enhancer(net, "tensorrt", cache_dir=tmp_path)
    assert all(second.cache_hits.values()) and not any(first.cache_hits.values())


# -- the common front end -----------------------------------------------------------------------


def test_batches_larger_than_max_batch_are_split(net, crops):
    enhancer = TorchEnhancer(net, buckets=(1, 2))
    many = np.concatenate([crops, crops[::-1]])
    out = enhancer.enhance(many, np.concatenate([PRIOR, PRIOR[::-1]]))
    assert np.array_equal(out[:3], enhancer.enhance(crops, PRIOR))
    assert np.array_equal(out[3:], out[:3][::-1])


def test_bad_inputs_are_refused_with_both_shapes(net, crops):
    enhancer = TorchEnhancer(net)
    s = net.config.crop_size
    with pytest.raises(ValueError, match=rf"expected \(N, {s}, {s}, 3\) uint8 RGB, got \(3, {s}, {s}, 3\) float32"):
        enhancer.enhance(crops.astype(np.float32))
    with pytest.raises(ValueError, match=r"prior: expected shape \(3, 3\) for 3 crops, got \(2, 3\)"):
        enhancer.enhance(crops, PRIOR[:2])
    with pytest.raises(ValueError, match=r"identity: expected shape \(128, 5, 5\), got \(128, 9, 9\)"):
        enhancer.enhance(crops, None, np.zeros((128, 9, 9), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        enhancer.enhance(crops, np.full((3, 3), np.nan, np.float32))
    assert enhancer.enhance(crops[:0]).shape == (0, s, s, 3)


def test_graph_inputs_pad_by_repeating_the_last_crop(net, crops):
    inputs = TorchEnhancer(net).pack(crops, PRIOR, None)
    padded = inputs.padded(5)
    assert len(padded) == 5 and np.array_equal(padded.crops[3:], crops[[2, 2]])
    assert np.array_equal(padded.prior[4], PRIOR[2]) and len(padded.identity) == len(padded.has_identity) == 5
    with pytest.raises(ValueError):
        inputs.padded(2)


# -- the artefact cache and the TensorRT engine cache (fake compiler) ---------------------------


def test_key_digest_ignores_order_and_sees_values():
    assert key_digest({"a": "1", "b": "2"}) == key_digest({"b": "2", "a": "1"})
    assert key_digest({"a": "1"}) != key_digest({"a": "2"})


def test_network_digest_follows_the_weights():
    a, b = random_network("smoke", seed=5), random_network("smoke", seed=5)
    assert network_digest(a) == network_digest(b)
    with torch.no_grad():
        next(b.parameters()).view(-1)[0] += 1e-3
    assert network_digest(a) != network_digest(b)


def test_artifact_cache_builds_once_and_rebuilds_damaged_files(tmp_path, caplog):
    cache = ArtifactCache(tmp_path, "things", ".bin")
    builds = []

    def build(path):
        builds.append(path)
        path.write_bytes(b"payload")

    def load(path):
        data = path.read_bytes()
        if data != b"payload":
            raise ValueError("damaged")
        return data

    key = {"network": "abc"}
    assert cache.get_or_build(key, build, load) == (b"payload", False)
    assert cache.get_or_build(key, build, load) == (b"payload", True)
    assert len(builds) == 1
    cache.path(key).write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING):
        assert cache.get_or_build(key, build, load) == (b"payload", False)
    assert "unreadable" in caplog.text and len(builds) == 2
    assert sorted(p.name for p in (tmp_path / "things").iterdir()) == sorted([cache.path(key).name, cache.path(key).stem + ".json"])
    with pytest.raises(RuntimeError, match="wrote nothing"):
        cache.get_or_build({"network": "other"}, lambda path: None, load)


class FakeCompiler:
    """Stands in for Torch-TensorRT: a float32 ``torch.export`` program per batch bucket, on the CPU."""

    def __init__(self):
        self.calls: list[int] = []

    def compile(self, net, batch, device, path):
        self.calls.append(batch)
        program = torch.export.export(InferenceGraph(net).eval(), example_graph_inputs(net, batch))
        torch.export.save(program, str(path))

    @staticmethod
    def load(path):
        return torch.export.load(str(path)).module()


def fake_tensorrt(net, cache_dir, compiler, gpu="Fake GPU"):
    return TensorRTEnhancer(
        net,
        cache_dir=cache_dir,
        device="cpu",
        gpu={"gpu": gpu, "compute_capability": "9.0"},
        compile_fn=compiler.compile,
        load_fn=compiler.load,
    )


def test_tensorrt_engine_cache_hits_on_second_build(net, tmp_path, crops, identity):
    compiler = FakeCompiler()
    first = fake_tensorrt(net, tmp_path, compiler)
    assert compiler.calls == [1, 4] and first.cache_hits == {1: False, 4: False}
    second = fake_tensorrt(net, tmp_path, compiler)
    assert compiler.calls == [1, 4] and second.cache_hits == {1: True, 4: True}
    # Batches of 1, 3 (padded to 4) and 5 (split 4 + 1) through the loaded engines match torch.
    five = np.concatenate([crops, crops[:2]])
    for batch in (crops[:1], crops, five):
        assert psnr(second.enhance(batch, None, identity), reference(net, batch, None, identity)) >= 45
    # Another GPU or other weights are misses.
    fake_tensorrt(net, tmp_path, compiler, gpu="Other GPU")
    fake_tensorrt(random_network("smoke", seed=9), tmp_path, compiler)
    assert compiler.calls == [1, 4] * 3


def test_onnx_export_is_cached_per_weights(net, cache_dir, monkeypatch):
    pytest.importorskip("onnxruntime")
    OnnxRuntimeEnhancer(net, threads=1, cache_dir=cache_dir)  # exported (or already) once

    def no_export(*args):
        raise AssertionError("exported again")

    monkeypatch.setattr("engine.runtime.onnx_backend.export_onnx", no_export)
    assert OnnxRuntimeEnhancer(net, threads=1, cache_dir=cache_dir).model_path.is_file()


# -- selection ----------------------------------------------------------------------------------


class Stub:
    crop_size = 32

    def __init__(self, name):
        self.name = name

    def enhance(self, crops, prior=None, identity=None):
        return crops


def stub_backends(monkeypatch, usable: set[str], failing: frozenset[str] = frozenset()):
    created = []

    def factory(name):
        def create(net, options):
            created.append(name)
            if name in failing:
                raise RuntimeError("engine build failed")
            return Stub(name)

        return create

    for name, backend in list(BACKENDS.items()):
        monkeypatch.setitem(
            BACKENDS,
            name,
            dataclasses.replace(backend, missing=(lambda: None) if name in usable else (lambda n=name: f"{n} missing"), create=factory(name)),
        )
    return created


@pytest.mark.parametrize(
    "usable, expected",
    [
        ({"tensorrt", "cuda", "onnxruntime", "torch"}, "tensorrt"),
        ({"cuda", "openvino", "torch"}, "cuda"),
        ({"onnxruntime", "torch"}, "onnxruntime"),
        ({"torch"}, "torch"),
    ],
)
def test_auto_never_picks_an_unavailable_backend(monkeypatch, net, usable, expected, caplog):
    created = stub_backends(monkeypatch, usable)
    with caplog.at_level(logging.INFO, logger="engine.runtime"):
        enhancer = create_enhancer(net, "auto", threads=1)
    assert enhancer.name == expected and created == [expected]
    lines = [r for r in caplog.records if r.name == "engine.runtime"]
    assert len(lines) == 1 and f"backend {expected} (auto)" in lines[0].getMessage()


def test_auto_skips_a_backend_that_fails_to_start(monkeypatch, net, caplog):
    created = stub_backends(monkeypatch, {"tensorrt", "torch"}, failing=frozenset({"tensorrt"}))
    with caplog.at_level(logging.INFO, logger="engine.runtime"):
        assert create_enhancer(net, "auto", threads=1).name == "torch"
    assert created == ["tensorrt", "torch"]
    assert "tensorrt failed to start" in caplog.text


def test_auto_on_this_machine_is_the_first_usable_backend(net, cache_dir):
    status = select.backend_status()
    expected = next(name for name in select.AUTO_ORDER if status[name] is None)
    if expected in ("tensorrt", "cuda"):
        pytest.skip("GPU machine: covered by the GPU tests")
    assert create_enhancer(net, "auto", threads=1, cache_dir=cache_dir).name.startswith(expected)


@pytest.mark.parametrize(
    "name, extra",
    [("tensorrt", "nasfe-cam[tensorrt]"), ("onnxruntime", "nasfe-cam[onnx]"), ("openvino", "nasfe-cam[openvino]")],
)
def test_missing_backend_names_its_extra(monkeypatch, net, name, extra):
    monkeypatch.setattr(select, "_has_modules", lambda *modules: False)
    with pytest.raises(UserError, match=rf"backend '{name}' needs .*: pip install {re.escape(repr(extra))}$"):
        create_enhancer(net, name)


def test_missing_gpu_is_a_user_error(monkeypatch, net):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="backend 'cuda' needs an NVIDIA GPU"):
        create_enhancer(net, "cuda")
    with pytest.raises(UserError, match="unknown backend 'vulkan'; choose auto or one of: tensorrt, cuda"):
        create_enhancer(net, "vulkan")
    with pytest.raises(UserError, match="threads must be >= 1"):
        create_enhancer(net, "torch", threads=0)


@pytest.mark.parametrize("cores, threads", [(1, 1), (2, 1), (3, 1), (8, 4)])
def test_default_threads_is_half_the_usable_cores(monkeypatch, cores, threads):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert default_threads() == threads


# -- loading ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A trained-layout pair on disk: genotype.json + weights.safetensors (unfused, as training saves)."""
    folder = tmp_path_factory.mktemp("engine")
    genotype = build_supernet("smoke", seed=6).derive()
    net = build_fused(genotype, seed=6).eval()
    genotype.save(folder / "genotype.json")
    save_fused(net, folder / "weights.safetensors")
    return folder, network_digest(net.fuse())


def test_missing_shipped_engine_is_said_clearly(monkeypatch, tmp_path):
    monkeypatch.setattr(load_module, "SHIPPED_WEIGHTS", tmp_path / "weights.safetensors")
    monkeypatch.setattr(load_module, "SHIPPED_GENOTYPE", tmp_path / "genotype.json")
    with pytest.raises(UserError, match=r"the shipped engine is missing \(.*genotype.json, .*weights.safetensors not found\)"):
        load_enhancer()


def test_shipped_engine_loads_when_present(monkeypatch, saved):
    folder, digest = saved
    monkeypatch.setattr(load_module, "SHIPPED_WEIGHTS", folder / "weights.safetensors")
    monkeypatch.setattr(load_module, "SHIPPED_GENOTYPE", folder / "genotype.json")
    enhancer = load_enhancer("torch", threads=1)
    assert enhancer.name == "torch-cpu-fp32" and enhancer.crop_size == 32
    assert network_digest(load_network()) == digest


def test_weights_alone_find_their_genotype(saved, tmp_path):
    folder, digest = saved
    assert network_digest(load_network(folder / "weights.safetensors")) == digest  # genotype.json beside
    lone = tmp_path / "weights.safetensors"
    lone.write_bytes((folder / "weights.safetensors").read_bytes())
    assert network_digest(load_network(lone)) == digest  # genotype recorded in the metadata
    with pytest.raises(UserError, match="given without its weights"):
        load_network(None, folder / "genotype.json")
    with pytest.raises(UserError, match="weights file not found"):
        load_network(tmp_path / "nope.safetensors")


def test_time_engine_reports_per_face_numbers(net):
    timing = time_engine(TorchEnhancer(net), 2, runs=3, warmup=1)
    assert timing.batch == 2 and timing.runs == 3
    assert 0 < timing.median_ms_per_face <= timing.p95_ms_per_face
    assert timing.median_ms_per_call == pytest.approx(2 * timing.median_ms_per_face, rel=0.01)

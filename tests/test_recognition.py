"""Recogniser ports against independent references, alignment warps, and the LFW verification tool."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from safetensors.torch import load_file

from engine.align import CROP_SIZE, TEMPLATE4, crop_matrix, crop_to_crop_matrix, landmarks4_from_yunet5
from engine.errors import UserError
from engine.recognition import (
    ARCFACE_TEMPLATE4,
    DLIB_TEMPLATE4,
    CropWarp,
    DlibResNet,
    MobileFaceNet,
    load_dlib_resnet,
    load_mobilefacenet,
    load_recognizer,
    warp_affine,
)
from engine.recognition.convert import dlib_state_dict, mobilefacenet_state_dict
from engine.recognition.dlib_format import read_dlib_net
from engine.recognition.dlib_resnet import DLIB_WEIGHTS
from engine.recognition.mobilefacenet import MOBILEFACENET_WEIGHTS
from training.commands import verify as verify_cmd
from training.eval_cli import main as eval_main
from training.verify import aligned_chip, best_threshold, load_landmarks, ten_fold_accuracy

torch.set_num_threads(1)

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
FACES = SHARED / "faces"
DLIB_DAT = SHARED / "models" / "dlib_face_recognition_resnet_model_v1.dat"
MFN_TFLITE = SHARED / "models" / "mobilefacenet.tflite"
#: Three LFW people with three photos each (train split, index order).
PEOPLE = ("Abdullah_Gul", "Adam_Sandler", "Adrien_Brody")


@pytest.fixture(scope="module")
def landmarks() -> dict[str, np.ndarray]:
    return load_landmarks(FACES)


@pytest.fixture(scope="module")
def photos(landmarks) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(person, RGB image, YuNet landmarks) for 3 photos of each of PEOPLE."""
    out = []
    for person in PEOPLE:
        paths = sorted(p for p in landmarks if p.startswith(f"lfw/{person}_"))[:3]
        assert len(paths) == 3, person
        for p in paths:
            out.append((person, cv2.imread(str(FACES / p))[:, :, ::-1].copy(), landmarks[p]))
    return out


@pytest.fixture(scope="module")
def dlib_net() -> DlibResNet:
    return load_dlib_resnet()


@pytest.fixture(scope="module")
def mfn_net() -> MobileFaceNet:
    return load_mobilefacenet()


def _chips(photos, size: int, template: np.ndarray) -> torch.Tensor:
    arr = np.stack([aligned_chip(img, l5, size, template) for _, img, l5 in photos])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0


# ---------------------------------------------------------------- dlib: independent numpy forward


def _np_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int) -> np.ndarray:
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    win = sliding_window_view(x, w.shape[2:], axis=(1, 2))[:, ::stride, ::stride]  # (k, R, C, kh, kw)
    return np.einsum("krcij,fkij->frc", win, w, optimize=True) + b[:, None, None]


def _np_pool(x: np.ndarray, size: int, stride: int, op) -> np.ndarray:
    return op(sliding_window_view(x, (size, size), axis=(1, 2))[:, ::stride, ::stride], axis=(3, 4))


def _np_add_prev(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """dlib tt::add: output takes the larger size per dimension; missing values count as 0."""
    out = np.zeros([max(a.shape[i], b.shape[i]) for i in range(3)], np.float64)
    out[: a.shape[0], : a.shape[1], : a.shape[2]] += a
    out[: b.shape[0], : b.shape[1], : b.shape[2]] += b
    return out


def dlib_numpy_forward(net, chip_rgb_u8: np.ndarray) -> np.ndarray:
    """Run dlib's layer list as stored (affine layers unfolded), in float64: ``(150, 150, 3)`` -> ``(128,)``."""
    mean = np.array(net.input_mean_rgb)[:, None, None]
    x = (chip_rgb_u8.transpose(2, 0, 1).astype(np.float64) - mean) / 256.0
    block_in, at_block_start = None, False
    for layer in net.layers:
        k = layer.kind
        if k == "con":
            if at_block_start:
                block_in, at_block_start = x, False
            _, _, _, stride, _, pad, _ = layer.config
            x = _np_conv(x, layer.arrays["filters"].astype(np.float64), layer.arrays["bias"], stride, pad)
        elif k == "affine":
            x = x * layer.arrays["gamma"][:, None, None] + layer.arrays["beta"][:, None, None]
        elif k == "relu":
            x = np.maximum(x, 0)
        elif k == "max_pool":
            x, at_block_start = _np_pool(x, 3, 2, np.max), True
        elif k == "avg_pool" and layer.config[0] == 0:
            x = x.mean(axis=(1, 2))
        elif k == "avg_pool":
            block_in = _np_pool(block_in, 2, 2, np.mean)
        elif k == "add_prev":
            x, at_block_start = _np_add_prev(x, block_in), True
        elif k == "fc":
            x = x @ layer.arrays["weights"]
    return x


def test_dlib_port_matches_numpy_forward_of_dat_file(photos, dlib_net):
    net = read_dlib_net(DLIB_DAT)
    chips = _chips(photos[:2], 150, DLIB_TEMPLATE4)
    with torch.no_grad():
        ours = dlib_net.embed(chips).numpy()
    for chip, emb in zip(chips, ours):
        ref = dlib_numpy_forward(net, (chip.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        np.testing.assert_allclose(emb, ref / np.linalg.norm(ref), atol=2e-5)


def test_dlib_feature_maps_have_documented_shapes(dlib_net):
    with torch.no_grad():
        f = dlib_net(torch.rand(2, 3, 150, 150, generator=torch.Generator().manual_seed(0)))
    assert f.level3.shape == (2, 64, 17, 17) and f.level2.shape == (2, 128, 8, 8)
    assert torch.allclose(f.embedding.norm(dim=1), torch.ones(2))


def test_shipped_weights_are_the_conversion_of_the_shared_files():
    for shipped, converted in ((DLIB_WEIGHTS, dlib_state_dict(DLIB_DAT)),
                               (MOBILEFACENET_WEIGHTS, mobilefacenet_state_dict(MFN_TFLITE))):
        ref = load_file(str(shipped))
        assert ref.keys() == converted.keys()
        assert all(torch.equal(ref[k], converted[k]) for k in ref)


def test_dlib_reader_rejects_other_files(tmp_path):
    with pytest.raises(ValueError, match="dlib"):
        read_dlib_net(MFN_TFLITE)
    truncated = tmp_path / "cut.dat"
    truncated.write_bytes(DLIB_DAT.read_bytes()[:100_000])
    with pytest.raises(ValueError, match="truncated"):
        read_dlib_net(truncated)


# ---------------------------------------------------------------- MobileFaceNet: TFLite interpreter


def test_mobilefacenet_port_matches_tflite_interpreter(mfn_net):
    interpreter_mod = pytest.importorskip("ai_edge_litert.interpreter")
    files = [sorted((FACES / "glint" / who).iterdir())[0] for who in ("Barack_Obama", "Drew_Barrymore")]
    # Glint360k photos are already ArcFace-aligned 112x112.
    imgs = np.stack([cv2.imread(str(f))[:, :, ::-1] for f in files]).astype(np.float32)
    it = interpreter_mod.Interpreter(
        model_path=str(MFN_TFLITE),
        experimental_op_resolver_type=interpreter_mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    it.allocate_tensors()  # the file's batch is fixed at 2
    it.set_tensor(it.get_input_details()[0]["index"], (imgs - 127.5) / 128.0)
    it.invoke()
    ref = it.get_tensor(it.get_output_details()[0]["index"])
    with torch.no_grad():
        ours = mfn_net(torch.from_numpy(imgs / 255.0).permute(0, 3, 1, 2).float()).numpy()
    np.testing.assert_allclose(ours, ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-5)


# ---------------------------------------------------------------- behaviour on real faces


@pytest.mark.parametrize("name", ["dlib", "mobilefacenet"])
def test_same_person_scores_higher_than_different_people(name, photos, dlib_net, mfn_net):
    net = dlib_net if name == "dlib" else mfn_net
    with torch.no_grad():
        e = net.embed(_chips(photos, net.chip_size, net.template))
    sim = (e @ e.T).numpy()
    who = np.array([p for p, _, _ in photos])
    same = (who[:, None] == who[None, :]) & ~np.eye(len(who), dtype=bool)
    diff = who[:, None] != who[None, :]
    assert sim[same].min() > sim[diff].max()


def test_load_recognizer_by_name_and_errors(tmp_path):
    assert isinstance(load_recognizer("dlib"), DlibResNet)
    with pytest.raises(UserError, match="unknown recognizer 'vgg'"):
        load_recognizer("vgg")
    with pytest.raises(UserError, match="not found"):
        load_dlib_resnet(tmp_path / "missing.safetensors")
    with pytest.raises(UserError, match="does not hold dlib ResNet weights"):
        load_dlib_resnet(MOBILEFACENET_WEIGHTS)
    for net, shape in ((DlibResNet(), (1, 1, 150, 150)), (MobileFaceNet(), (1, 3, 100, 100))):
        with pytest.raises(ValueError, match=r"got shape \(1, "):
            net(torch.zeros(shape))


def test_recognizers_are_frozen(dlib_net, mfn_net):
    for net in (dlib_net, mfn_net):
        assert not net.training and not any(p.requires_grad for p in net.parameters())


# ---------------------------------------------------------------- warps


def test_warp_affine_matches_cv2(photos):
    img = photos[0][1]
    m = crop_matrix(landmarks4_from_yunet5(photos[0][2]), 150, DLIB_TEMPLATE4)
    ref = cv2.warpAffine(img.astype(np.float32), m, (150, 150), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    ours = warp_affine(torch.from_numpy(img).permute(2, 0, 1)[None].float(), m, 150)[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - ref)[5:-5, 5:-5].max() < 0.05  # cv2 quantises coordinates to 1/32 px


def test_crop_warp_composes_to_the_direct_chip(photos, dlib_net, mfn_net):
    img, l5 = photos[0][1], photos[0][2]
    crop = torch.from_numpy(aligned_chip(img, l5, CROP_SIZE, TEMPLATE4)).permute(2, 0, 1)[None].float() / 255
    for net in (dlib_net, mfn_net):
        via_crop = net.crop_warp(CROP_SIZE)(crop)[0]
        direct = torch.from_numpy(aligned_chip(img, l5, net.chip_size, net.template)).permute(2, 0, 1).float() / 255
        assert via_crop.shape == direct.shape
        assert (via_crop - direct).abs().mean() < 0.02  # same geometry; only resampling differs


def test_crop_warp_is_differentiable_and_checks_shape():
    warp = CropWarp(TEMPLATE4, 16, ARCFACE_TEMPLATE4, 12).double()
    x = torch.rand(1, 2, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    assert torch.autograd.gradcheck(warp, (x,))
    with pytest.raises(ValueError, match=r"expected \(B, C, 16, 16\) crops, got shape \(1, 2, 15, 16\)"):
        warp(torch.zeros(1, 2, 15, 16))


def test_templates_are_consistent_layouts():
    # Model crop -> chip is a similarity; both recognisers' chips lie inside the model crop.
    for template, size in ((DLIB_TEMPLATE4, 150), (ARCFACE_TEMPLATE4, 112)):
        m = crop_to_crop_matrix(template, size, TEMPLATE4, CROP_SIZE)  # chip -> model crop
        corners = np.array([[0, 0, 1], [size - 1, size - 1, 1]], np.float64) @ m.T
        assert corners.min() > 0 and corners.max() < CROP_SIZE - 1
        assert template[0, 0] < template[1, 0] and template[2, 1] < template[3, 1]


# ---------------------------------------------------------------- verification protocol and CLI


def test_best_threshold_and_ten_fold_protocol():
    rng = np.random.default_rng(0)
    same = np.tile([True, False], 100)
    scores = np.where(same, rng.uniform(0.6, 1.0, 200), rng.uniform(-0.2, 0.5, 200))
    t = best_threshold(scores, same)
    assert 0.5 <= t <= 0.6
    accs, thresholds = ten_fold_accuracy(scores, same, np.repeat(np.arange(10), 20))
    assert accs == [1.0] * 10 and len(thresholds) == 10
    flipped = ten_fold_accuracy(-scores, same, np.repeat(np.arange(10), 20))[0]
    assert max(flipped) <= 0.55  # no threshold rescues an inverted score


def test_verify_cli_quick_run(capsys, tmp_path):
    png = tmp_path / "hist.png"
    rc = eval_main(["verify", "--recognizer", "dlib", "--pairs-per-fold", "3", "--json", "--plot", str(png)])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["recognizer"] == "dlib" and out["pairs_used"] == 30 and out["pairs_total"] == 6000
    assert len(out["fold_accuracies"]) == 10 and 0.0 <= out["accuracy"] <= 1.0
    assert png.stat().st_size > 1000


def test_verify_cli_bad_faces_folder_is_one_line_error(capsys, tmp_path):
    assert eval_main(["verify", "--faces", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no index.csv" in err[0]
    assert verify_cmd.NAME == "verify"

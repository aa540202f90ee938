"""Safety and privacy (issue 11): no pickle, no network, reference photos private to the user.

* Static: every project ``.py`` file is parsed (comments and docstrings do not count) for pickle
  modules, ``torch.load`` without ``weights_only=True``, ``np.load(..., allow_pickle=True)`` and
  network clients. The scanner is itself tested on snippets that must and must not be flagged.
* Dynamic: with ``socket`` connections, name lookups and datagrams refused and recorded, the
  pipeline runs over frames of the sample clip with the MediaPipe detector, ``nasfe-cam doctor``
  runs, ``nasfe-cam run`` loads a real engine from disk, and a face is enrolled; nothing may have
  tried to connect. (This sees Python-level sockets; native libraries are covered by the static
  scan of how they are called, and by the machine having no network in CI.)
* Privacy: enrolled reference photos live under the user's config folder (``$XDG_CONFIG_HOME`` or
  ``~/.config``), folders ``0700`` and files ``0600`` whatever the umask, and Forget my face in the
  tray deletes them.
"""

from __future__ import annotations

import ast
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before Qt loads

import numpy as np
import pytest
import torch

from engine.errors import UserError
from facecam.bench import load_clip
from facecam.capture import CaptureError
from facecam.cli import main
from facecam.detect import MediaPipeDetector
from facecam.pipeline import FramePipeline
from facecam.tray.references import REFERENCE_FILES, ReferenceStore
from facecam.tray.settings import config_dir

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "assets" / "sample" / "webcam_sample.mkv"
#: Top-level folders that are not the project's own code.
NOT_PROJECT = {".venv", ".git", "runs", "out", "build", "dist", "node_modules", "__pycache__"}
#: Files allowed to use the socket module: this test, which blocks it.
NETWORK_EXEMPT = {"tests/test_safety.py"}

PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "cloudpickle", "dill", "joblib", "shelve"}
NETWORK_MODULES = {"socket", "requests", "httpx", "aiohttp", "urllib3", "http.client", "ftplib", "smtplib",
                   "websocket", "websockets", "xmlrpc.client", "paramiko"}
NETWORK_CALLS = {"create_connection", "urlopen", "urlretrieve", "load_state_dict_from_url", "download_url_to_file",
                 "hf_hub_download", "snapshot_download"}


# -- static scan ---------------------------------------------------------------------------------


def project_files() -> Iterator[Path]:
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if not NOT_PROJECT.intersection(rel.parts) and not any(p.startswith(".") for p in rel.parts):
            yield path


def _dotted(node: ast.AST) -> str:
    """``torch.load`` for the call target ``torch.load`` (empty when not a plain dotted name)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _keyword_is(call: ast.Call, name: str, value: object) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value for k in call.keywords)


def violations(source: str, *, network: bool = True) -> list[str]:
    """What the safety rules forbid in ``source``, as ``"line N: what"`` strings."""
    found = []
    for node in ast.walk(ast.parse(source)):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for module in modules:
            if module == "torch.load":  # a bare load(...) would slip past the call check below
                found.append(f"line {node.lineno}: imports torch.load by itself")
            if module.split(".")[0] in PICKLE_MODULES:
                found.append(f"line {node.lineno}: imports {module} (pickle)")
            if network and (module in NETWORK_MODULES or module.split(".")[0] in NETWORK_MODULES
                            or module.startswith("urllib")):
                found.append(f"line {node.lineno}: imports {module} (network client)")
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            last = name.rsplit(".", 1)[-1]
            if name == "torch.load" and not _keyword_is(node, "weights_only", True):
                found.append(f"line {node.lineno}: torch.load without weights_only=True")
            if name in ("np.load", "numpy.load") and any(
                k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                for k in node.keywords
            ):
                found.append(f"line {node.lineno}: {name} with allow_pickle not False")
            if last in ("read_pickle", "to_pickle"):
                found.append(f"line {node.lineno}: {name} (pickle)")
            if network and (last in NETWORK_CALLS or name.startswith("torch.hub")):
                found.append(f"line {node.lineno}: {name} (network)")
    return found


def test_the_scan_covers_the_project():
    files = {str(p.relative_to(ROOT)) for p in project_files()}
    for expected in ("engine/build.py", "facecam/pipeline.py", "facecam/tray/references.py", "training/cli.py",
                     "tests/test_safety.py"):
        assert expected in files
    assert not any(f.startswith(".venv") for f in files)


@pytest.mark.parametrize(
    "snippet",
    [
        "import pickle",
        "from pickle import loads",
        "import joblib",
        "torch.load(path)",
        "torch.load(path, weights_only=False)",
        "from torch import load",
        "np.load(path, allow_pickle=True)",
        "numpy.load(path, allow_pickle=flag)",
        "pd.read_pickle(path)",
        "import requests",
        "from urllib.request import urlopen",
        "import urllib",
        "import http.client",
        "from http import client",
        "import socket",
        "socket.create_connection(('example.org', 80))",
        "torch.hub.load('repo', 'model')",
        "hf_hub_download('repo', 'file')",
    ],
)
def test_the_scanner_flags(snippet):
    assert violations(snippet), snippet


@pytest.mark.parametrize(
    "snippet",
    [
        "torch.load(path, weights_only=True)",
        "np.load(path)",
        "np.load(path, allow_pickle=False)",
        "x = 'import pickle; torch.load(f)'  # a string, not code",
        "from safetensors.torch import load_file",
    ],
)
def test_the_scanner_passes(snippet):
    assert violations(snippet) == []


def test_no_pickle_loading_and_no_network_client_in_the_project():
    problems = []
    for path in project_files():
        rel = str(path.relative_to(ROOT))
        found = violations(path.read_text(encoding="utf-8"), network=rel not in NETWORK_EXEMPT)
        problems += [f"{rel} {v}" for v in found]
    assert problems == []


# -- no network at run time ------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch) -> list[str]:
    """Refuse (and record) every socket connection, datagram and name lookup made from Python."""
    attempts: list[str] = []

    def refuse(what: str):
        def blocked(*args, **kwargs):
            attempts.append(f"{what}{args[1:] if what.startswith('socket.') else args}")
            raise OSError(f"network blocked by the test ({what})")

        return blocked

    for name in ("connect", "connect_ex", "sendto"):
        monkeypatch.setattr(socket.socket, name, refuse(f"socket.{name}"))
    for name in ("create_connection", "getaddrinfo", "gethostbyname"):
        monkeypatch.setattr(socket, name, refuse(name))
    return attempts


class Mirror:
    crop_size = 128
    name = "test-mirror"

    def enhance(self, crops, prior=None, identity=None):
        return np.ascontiguousarray(crops[:, :, ::-1])


def test_the_block_is_real(no_network):
    """The fixture does refuse a connection (else the tests below would prove nothing)."""
    with pytest.raises(OSError, match="network blocked"):
        socket.create_connection(("127.0.0.1", 9))
    with pytest.raises(OSError, match="network blocked"), socket.socket() as s:
        s.connect(("127.0.0.1", 9))
    assert len(no_network) == 2


def test_the_pipeline_makes_no_network_connection(no_network):
    frames = load_clip(SAMPLE)[:8]
    with MediaPipeDetector() as detector, FramePipeline(Mirror(), detector=detector) as pipeline:
        results = [pipeline.process(f, i / 30) for i, f in enumerate(frames)]
    assert sum(r.enhanced for r in results) >= 6 and all(r.error is None for r in results)
    assert no_network == []


def test_doctor_makes_no_network_connection(no_network, capsys):
    assert main(["doctor"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 6
    assert no_network == []


def test_loading_a_real_engine_and_running_makes_no_network_connection(
    no_network, smoke_engine, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NASFE_CAM_CACHE", str(tmp_path / "cache"))
    argv = ["run", "--input", str(SAMPLE), "--output", "out.avi", "--frames", "3", "--backend", "torch",
            "--weights", str(smoke_engine / "weights.safetensors")]
    assert main(argv) == 0
    assert (tmp_path / "out.avi").is_file() and no_network == []


def test_enrolling_a_face_makes_no_network_connection(no_network, tmp_path):
    from engine.identity import enroll

    crops = load_clip(SAMPLE)[0][100:228, 250:378, ::-1].copy()[None].repeat(2, axis=0)
    prior = enroll(crops)
    ReferenceStore(tmp_path / "identity").save(crops, prior)
    assert prior.shape == (128, 8, 8) and no_network == []


# -- the reference photos stay private -------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh home folder with no XDG_CONFIG_HOME; the umask lets everyone read (the worst case)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    (tmp_path / "home").mkdir()
    old = os.umask(0)
    yield tmp_path / "home"
    os.umask(old)


def _photos() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (5, 128, 128, 3), dtype=np.uint8), rng.normal(size=(128, 8, 8)).astype(np.float32)


def test_reference_photos_are_private_and_stay_in_the_config_folder(home):
    folder = config_dir() / "identity"
    assert folder == home / ".config" / "nasfe-cam" / "identity"
    crops, prior = _photos()
    ReferenceStore(folder).save(crops, prior)
    written = [p for p in home.rglob("*")]
    assert all(p == home / ".config" or home / ".config" / "nasfe-cam" in (p, *p.parents) for p in written)
    for path in (home / ".config" / "nasfe-cam", folder):
        assert _mode(path) == 0o700, path
    assert sorted(p.name for p in folder.iterdir()) == sorted(REFERENCE_FILES)
    for path in folder.iterdir():
        assert _mode(path) == 0o600, path
    assert np.array_equal(np.load(folder / "references.npy"), crops)
    ReferenceStore(folder).save(crops[:2], prior)  # replaced, still private
    assert all(_mode(p) == 0o600 for p in folder.iterdir()) and np.load(folder / "references.npy").shape[0] == 2


def test_the_config_folder_follows_xdg_config_home(home, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_dir() == tmp_path / "xdg" / "nasfe-cam"
    ReferenceStore(config_dir() / "identity").save(*_photos())
    assert _mode(tmp_path / "xdg" / "nasfe-cam" / "identity" / "prior.npy") == 0o600
    assert not any(home.rglob("*"))  # nothing went to ~/.config


def test_forget_my_face_in_the_tray_deletes_the_photos(home):
    from PyQt6.QtWidgets import QApplication

    from facecam.detect import Face
    from facecam.tray.app import TrayApp
    from facecam.tray.providers import Providers

    class NoFace:
        name = "none"

        def detect(self, frame_bgr, timestamp_ms) -> list[Face]:
            return []

        def close(self) -> None:
            pass

    def no_engine():
        raise UserError("no engine in this test")

    def no_camera(spec, stats):
        raise CaptureError(f"cannot read from camera {spec}: it did not open or gave no frame")

    def no_vcam(width, height, fps, device):
        raise RuntimeError("no virtual camera in this test")

    folder = config_dir() / "identity"
    ReferenceStore(folder).save(*_photos())
    qapp = QApplication.instance() or QApplication(["test-safety"])  # kept referenced while Qt is in use
    providers = Providers(load_engine=no_engine, open_capture=no_camera, open_detector=NoFace, open_vcam=no_vcam,
                          list_cameras=list, enroll=lambda crops: np.zeros((128, 8, 8), np.float32))
    app = TrayApp(providers, config=config_dir(), camera="0", tray_available=False)
    try:
        assert app.controls.identity is not None and app.forget_action.isEnabled()
        app.forget_action.trigger()
        assert not folder.exists() and app.controls.identity is None
    finally:
        app.shutdown()
        qapp.processEvents()

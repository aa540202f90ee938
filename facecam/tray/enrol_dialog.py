""""Remember my face": a small window that collects clean photos of the user and saves the prior.

The dialog gets camera frames from the tray (:meth:`EnrolDialog.offer`), analyses at most one at a
time on its own job thread (face detection, quality checks: :mod:`facecam.tray.enrol`), then computes
the identity prior (:func:`engine.identity.enroll` through the providers) and saves it privately
(:class:`~facecam.tray.references.ReferenceStore`). ``enrolled`` carries the new prior to the tray.
Cancelling stops it; nothing is saved unless all photos were taken.
"""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtGui import QCloseEvent
from PyQt6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QProgressBar, QVBoxLayout, QWidget

from facecam.detect import Face, FaceDetector
from facecam.tray.enrol import EnrolmentCollector, Verdict
from facecam.tray.jobs import JobRunner
from facecam.tray.providers import Providers
from facecam.tray.references import ReferenceStore
from facecam.tray.widgets import bgr_to_pixmap

__all__ = ["EnrolDialog"]


class EnrolDialog(QDialog):
    """Collects ``photos`` reference photos from the live camera and saves the identity prior.

    Args:
        providers: the detector and the identity encoder (``enroll``) come from here.
        store: where the reference set is saved.
        photos: how many photos to take.
        parent: Qt parent.
    """

    #: The new ``(C, h, w)`` float32 identity prior, saved to the store.
    enrolled = pyqtSignal(object)
    #: Why enrolment failed (one line).
    failed = pyqtSignal(str)

    def __init__(
        self, providers: Providers, store: ReferenceStore, *, photos: int = 5, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Remember my face")
        self.providers = providers
        self.store = store
        self.collector = EnrolmentCollector(target=photos)
        self._jobs = JobRunner("nasfe-cam-enrol", self)
        self._cancelled = threading.Event()
        self._detector: FaceDetector | None = None  # opened and used on the job thread only
        self._faces: tuple[Face, ...] = ()
        self._accepted = False
        self._saving = False

        intro = QLabel(
            f"Look at the camera in good, even light. NASFE Cam takes {photos} clear photos of your face "
            "so it keeps your features right when the picture is poor.<br><br>"
            f"The photos stay on this computer, readable only by you, in<br><code>{store.folder}</code><br>"
            "and <b>Forget my face</b> in the menu deletes them."
        )
        intro.setWordWrap(True)
        intro.setTextFormat(Qt.TextFormat.RichText)
        self.image = QLabel("Waiting for the camera...")
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setFixedSize(384, 288)
        self.image.setStyleSheet("background: #202124; color: #e8eaed;")
        self.hint = QLabel("Looking for your face...")
        self.progress = QProgressBar()
        self.progress.setRange(0, photos)
        self.progress.setFormat("%v of %m photos")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        for widget in (intro, self.image, self.hint, self.progress, self.buttons):
            layout.addWidget(widget)

    # -- frames from the tray ------------------------------------------------------------------

    def offer(self, source_bgr: np.ndarray) -> None:
        """A new camera frame (uint8 ``(H, W, 3)`` BGR): shown, and analysed if the last one is done."""
        self._show(source_bgr)
        if self._jobs.busy or self.collector.done or self._cancelled.is_set():
            return
        t_s = time.monotonic()
        self._jobs.submit(lambda: self._analyse(source_bgr, t_s), self._on_analysed)

    def _analyse(self, frame_bgr: np.ndarray, t_s: float) -> tuple[Verdict, tuple[Face, ...]]:
        if self._detector is None:
            self._detector = self.providers.open_detector()
        faces = tuple(self._detector.detect(frame_bgr, int(t_s * 1000)))
        return self.collector.offer(frame_bgr, faces, t_s), faces

    def _on_analysed(self, result: tuple[Verdict, tuple[Face, ...]] | None, error: BaseException | None) -> None:
        if error is not None:
            self._fail(f"face detection failed: {error}")
            return
        verdict, self._faces = result  # type: ignore[misc]
        self._accepted = verdict.ok
        self.progress.setValue(len(self.collector.crops))
        self.hint.setText(verdict.reason)
        if self.collector.done and not self._saving:
            self._saving = True
            self.hint.setText("Computing your identity prior...")
            self._jobs.submit(self._compute_and_save, self._on_saved)

    # -- saving --------------------------------------------------------------------------------

    def _compute_and_save(self) -> np.ndarray | None:
        crops = self.collector.stacked()
        prior = np.asarray(self.providers.enroll(crops), np.float32)
        if self._cancelled.is_set():
            return None
        self.store.save(crops, prior)
        return prior

    def _on_saved(self, prior: np.ndarray | None, error: BaseException | None) -> None:
        if error is not None:
            self._fail(f"could not compute or save the reference set: {error}")
            return
        if prior is None:  # cancelled while computing: nothing saved
            return
        self.hint.setText(f"Done: {len(self.collector.crops)} photos saved. You can close this window.")
        self.buttons.setStandardButtons(QDialogButtonBox.StandardButton.Close)
        self.enrolled.emit(prior)

    def _fail(self, message: str) -> None:
        self.hint.setText(message)
        self.failed.emit(message)

    # -- display -------------------------------------------------------------------------------

    def _show(self, frame_bgr: np.ndarray) -> None:
        view = frame_bgr.copy()
        color = (80, 200, 60) if self._accepted else (0, 170, 255)  # BGR: green good enough, amber not
        for face in self._faces:
            x, y, w, h = (int(round(v)) for v in face.box_px)
            cv2.rectangle(view, (x, y), (x + w, y + h), color, max(2, frame_bgr.shape[1] // 200))
        pixmap = bgr_to_pixmap(view).scaled(
            self.image.size(), Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
        )
        self.image.setPixmap(pixmap)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 -- Qt's name
        """Cancel (an unfinished set is not saved) and release the detector on the job thread."""
        self._cancelled.set()
        self._jobs.submit(self._close_detector)
        self._jobs.shutdown(timeout_s=0.0)  # the thread ends after that job; nothing waits for it
        super().closeEvent(event)

    def _close_detector(self) -> None:
        if self._detector is not None:
            self._detector.close()
            self._detector = None

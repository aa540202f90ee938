"""The desktop tray app around the camera filter (``nasfe-cam tray``, the default command).

Qt-free parts (settings, the private reference store, enrolment checks, device listing, the filter
service) are importable without a display; the Qt parts live in :mod:`facecam.tray.app` and the
widget modules it uses. The Qt side talks to the running filter only through signals and the
:class:`facecam.controls.PipelineControls` state object.
"""

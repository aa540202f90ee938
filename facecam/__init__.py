"""NASFE Cam's camera filter: capture -> detect -> track -> align -> enhance -> expose -> paste -> sinks.

Entry points: :class:`facecam.session.CameraSession` (open and run everything from a few options),
:class:`facecam.runner.CameraFilter` (the threads), :class:`facecam.pipeline.FramePipeline` (one
frame), :class:`facecam.controls.PipelineControls` (live settings) and
:class:`facecam.stats.PipelineStats` (live statistics).
"""

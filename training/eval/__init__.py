"""Evaluation of restoration engines against the paper's test sets (PSNR, SSIM, face identification).

Modules: :mod:`.metrics` (PSNR/SSIM), :mod:`.baselines` (classical restorers), :mod:`.recognition_eval`
(closed-set identification), :mod:`.report` (Markdown/JSON), :mod:`.grid` (comparison pictures) and
:mod:`.run` (the whole evaluation, behind ``nasfe-eval run``).
"""

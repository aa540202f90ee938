"""Network parts around the fusion network: task encoders, classifier, identity branch, decoder.

Everything here is shared verbatim by the supernet (:mod:`engine.supernet`) and the derived network
(:mod:`engine.fused`) through :class:`NASFEShell`, so weights move between them by name.

Output form (:class:`ImageHead`): ``restored = base(x) * gain + residual``. Denoising and deblurring
are small corrections, which a residual learns easily; low light needs a large multiplicative change
(gains of 2-20x for the paper's ``r`` in [0.05, 0.5]) that a residual would have to re-create
pixel by pixel. The head therefore predicts a smooth log-gain map (at the encoder resolution,
bounded to ``|log gain| <= 4``, bilinearly upsampled) plus a full-resolution residual. The gain
would also amplify the input's noise, which the residual of a small network cannot cancel pixel by
pixel (the colour blotches of a brightened dark frame), so ``base(x)`` is a per-pixel softmax blend of
``x`` and box-filtered copies of it (``NASFEConfig.head_smooth``): the network only has to say where
to smooth and how much. Everything starts near the identity (gain 1, residual 0, base ~ x). The output
is not clamped (losses see the raw values); clamp to [0, 1] when converting to an image.

Identity branch (:class:`IdentityInjection`), following the paper's eq. 7: the caller passes
``I = mean_i(instnorm(F_i))`` over clean reference photos; the network re-styles it with the
degraded image's statistics, ``sigma_y * I + mu_y``. **Deviation:** the paper takes ``mu_y, sigma_y``
from VGGFace features of the degraded image ``y``; that would run a recognition network on every
frame, so here ``mu_y, sigma_y`` are the spatial mean/std of a learned 1x1 projection (to
``id_channels``) of the fusion-entry features, which already encode ``y``. Without enrolment
(``identity=None``) a learned neutral embedding takes the place of the re-styled prior.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.configs import NASFEConfig
from engine.enhancer import CLASSES
from engine.ops.layers import ConvBN, FiLM, check_image_like, fuse_modules, resize_to

__all__ = [
    "ResBlock",
    "TaskEncoder",
    "DegradationClassifier",
    "FusionEntry",
    "IdentityInjection",
    "CellInput",
    "ImageHead",
    "Decoder",
    "NASFEShell",
    "TaskPretrainNet",
    "MAX_LOG_GAIN",
    "BASE_PREFERENCE",
    "spatial_mean_std",
]

#: Bound of the predicted log-gain: gains in [e^-4, e^4] ~ [0.02, 55].
MAX_LOG_GAIN = 4.0

#: Initial logit of the unfiltered input in the image head's base blend (the box-filtered copies
#: start at 0): with three copies ``x`` gets weight ``e^6 / (e^6 + 3) ~ 0.99``, so an untrained head,
#: or one added to weights trained without it, starts where the plain ``x * gain`` head would.
BASE_PREFERENCE = 6.0


def spatial_mean_std(x: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation over H, W of ``(B, C, H, W)``, each ``(B, C, 1, 1)``.

    Computed from the first two moments: ``torch.var`` runs a single-threaded Welford pass that
    measured 20x slower on CPU than two means.
    """
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = (x.square().mean(dim=(2, 3), keepdim=True) - mean.square()).clamp_min(0.0)
    return mean, (var + eps).sqrt()


class ResBlock(nn.Module):
    """``relu(x + BN(conv3x3(relu(BN(conv3x3(x))))))`` at constant width."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(channels, channels, 3)
        self.conv2 = ConvBN(channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))


class TaskEncoder(nn.Module):
    """One task encoder (E_B, E_N or E_L): conv + FiLM(prior) + residual blocks at stem resolution.

    Input: the pixel-unshuffled image ``(B, 3 * stem**2, S / stem, S / stem)`` and the prior
    ``(B, 3)``; output ``(B, enc_channels, S / stem, S / stem)``.
    """

    def __init__(self, config: NASFEConfig) -> None:
        super().__init__()
        self.in_channels = 3 * config.stem**2
        self.stem = ConvBN(self.in_channels, config.enc_channels, 3)
        self.film = FiLM(config.enc_channels, len(CLASSES))
        self.blocks = nn.Sequential(*(ResBlock(config.enc_channels) for _ in range(config.enc_blocks)))

    def forward(self, x_stem: Tensor, prior: Tensor) -> Tensor:
        check_image_like(x_stem, self.in_channels, "encoder input")
        return self.blocks(torch.relu(self.film(self.stem(x_stem), prior)))


class DegradationClassifier(nn.Module):
    """CN: which degradations (blur, noise, low light) are present; multi-label, usable alone.

    ``x (B, 3, H, W)`` RGB in [0, 1] -> 2x pixel-unshuffle (lossless, so noise stays visible) ->
    stride-2 conv stages -> spatial mean and standard deviation of the last features (brightness and
    texture energy) -> linear -> 3 logits in :data:`engine.enhancer.CLASSES` order. Train with
    ``BCEWithLogitsLoss`` on :meth:`forward`; :meth:`probabilities` applies the sigmoid.
    """

    def __init__(self, config: NASFEConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 12
        for c in config.cls_channels:
            layers += [ConvBN(c_in, c, 3, stride=2), nn.ReLU()]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * c_in, len(CLASSES))

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, 3)``."""
        check_image_like(x, 3, "image")
        f = self.features(F.pixel_unshuffle(x, 2))
        mean, std = spatial_mean_std(f)
        return self.head(torch.cat([mean.flatten(1), std.flatten(1)], dim=1))

    def probabilities(self, x: Tensor) -> Tensor:
        """Sigmoid probabilities ``(B, 3)`` in [0, 1]."""
        return torch.sigmoid(self(x))


class FusionEntry(nn.Module):
    """Concatenated encoder features -> fusion level 0: ``fusion_down`` stride-2 3x3 convs (a 1x1
    conv when 0), then FiLM on the prior."""

    def __init__(self, config: NASFEConfig) -> None:
        super().__init__()
        c_in, c_out = 3 * config.enc_channels, config.fusion_channels[0]
        if config.fusion_down == 0:
            self.down = ConvBN(c_in, c_out, 1)
        else:
            convs: list[nn.Module] = []
            for i in range(config.fusion_down):
                convs += ([nn.ReLU()] if i else []) + [ConvBN(c_in if i == 0 else c_out, c_out, 3, stride=2)]
            self.down = nn.Sequential(*convs)
        self.film = FiLM(c_out, len(CLASSES))

    def forward(self, features: Tensor, prior: Tensor) -> Tensor:
        return self.film(self.down(features), prior)


class IdentityInjection(nn.Module):
    """Identity prior -> AdaIN with the degraded image's statistics -> 1x1 -> added to fusion level 0.

    See the module docstring for the deviation from the paper (statistics from a learned projection
    of the network's own features instead of VGGFace features of ``y``).
    """

    def __init__(self, feat_channels: int, id_channels: int, out_channels: int) -> None:
        super().__init__()
        self.id_channels = id_channels
        self.stats = nn.Conv2d(feat_channels, id_channels, 1)
        self.neutral = nn.Parameter(torch.zeros(1, id_channels, 1, 1))
        self.proj = nn.Conv2d(id_channels, out_channels, 1)
        nn.init.zeros_(self.proj.weight)  # starts as "no identity information"
        nn.init.zeros_(self.proj.bias)

    def forward(self, features: Tensor, identity: Tensor | None, has_identity: Tensor | None = None) -> Tensor:
        """Injection term to add to ``features``.

        Args:
            features: ``(B, C, H, W)`` fusion-entry features.
            identity: ``(B or 1, id_channels, h, w)`` mean instance-normalised reference features,
                or ``None`` (nobody enrolled: the learned neutral embedding is used).
            has_identity: optional ``(B,)`` float in {0, 1}; 0 selects the neutral embedding for
                that sample (lets one exported graph serve enrolled and unenrolled calls).

        Returns:
            ``(B, C, H, W)``, or ``(1, C, 1, 1)`` when ``identity`` is ``None`` (broadcasts).
        """
        if identity is None:
            return self.proj(self.neutral)
        b = features.shape[0]
        if identity.ndim != 4 or identity.shape[1] != self.id_channels or identity.shape[0] not in (1, b):
            raise ValueError(
                f"identity: expected shape ({b} or 1, {self.id_channels}, h, w), got {tuple(identity.shape)}"
            )
        mu, sigma = spatial_mean_std(self.stats(features))
        styled = sigma * identity.to(features.dtype) + mu
        if has_identity is not None:
            m = has_identity.to(features.dtype).reshape(-1, 1, 1, 1)
            styled = m * styled + (1.0 - m) * self.neutral
        # 1x1 conv and bilinear resize commute; project at the prior's small size, then resize.
        return resize_to(self.proj(styled), tuple(features.shape[-2:]))


class CellInput(nn.Module):
    """Bring a cell input to the cell's level and width: ReLU, resample, 1x1 conv + BN.

    ``shift = target_level - source_level``: > 0 average-pools by ``2**shift`` before the conv,
    < 0 upsamples bilinearly by ``2**-shift`` after it (conv, BN and bilinear upsampling commute, so
    the conv always runs at the lower resolution).
    """

    def __init__(self, c_in: int, c_out: int, shift: int) -> None:
        super().__init__()
        self.shift = shift
        self.conv = ConvBN(c_in, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(x)
        if self.shift > 0:
            x = F.avg_pool2d(x, 2**self.shift)
        x = self.conv(x)
        if self.shift < 0:
            x = F.interpolate(x, scale_factor=2.0 ** (-self.shift), mode="bilinear", align_corners=False)
        return x


class ImageHead(nn.Module):
    """Features at ``S / stem`` -> restored image ``base(x) * gain + residual`` (see module docstring).

    The residual comes from a 3x3 conv to ``3 * stem**2`` channels and a pixel shuffle; the
    log-gain from a zero-initialised 1x1 conv (gain 1 at start), bounded by ``MAX_LOG_GAIN * tanh``;
    the base blend weights from a 1x1 conv whose bias starts at :data:`BASE_PREFERENCE` for ``x``
    (weight ~0.99 on the unfiltered input).
    """

    def __init__(self, channels: int, stem: int, smooth: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.stem = stem
        self.smooth = tuple(smooth)
        self.residual = nn.Conv2d(channels, 3 * stem**2, 3, padding=1)
        self.log_gain = nn.Conv2d(channels, 3, 1)
        nn.init.zeros_(self.log_gain.weight)
        nn.init.zeros_(self.log_gain.bias)
        self.base_logits = nn.Conv2d(channels, 1 + len(self.smooth), 1) if self.smooth else None
        if self.base_logits is not None:
            nn.init.zeros_(self.base_logits.weight)
            with torch.no_grad():
                self.base_logits.bias.zero_()[0] = BASE_PREFERENCE

    def base(self, features: Tensor, x: Tensor) -> Tensor:
        """``x`` blended per pixel with its ``k x k`` box-filtered copies, ``k`` in ``smooth``: ``(B, 3, S, S)``."""
        if self.base_logits is None:
            return x
        size = tuple(x.shape[-2:])
        weights = torch.softmax(resize_to(self.base_logits(features), size), dim=1)
        out = x * weights[:, :1]
        for i, k in enumerate(self.smooth, start=1):
            out = out + resize_to(F.avg_pool2d(x, k), size) * weights[:, i : i + 1]
        return out

    def forward(self, features: Tensor, x: Tensor) -> Tensor:
        """``features (B, C, S/stem, S/stem)``, ``x (B, 3, S, S)`` -> ``(B, 3, S, S)`` unclamped RGB."""
        residual = self.residual(features)
        if self.stem > 1:
            residual = F.pixel_shuffle(residual, self.stem)
        log_gain = MAX_LOG_GAIN * torch.tanh(self.log_gain(features) / MAX_LOG_GAIN)
        gain = torch.exp(resize_to(log_gain, tuple(x.shape[-2:])))
        return self.base(features, x) * gain + residual


class Decoder(nn.Module):
    """Fusion output (level 0) -> encoder resolution (pixel shuffle per stride-2 step) + skip from
    the encoders -> residual blocks -> :class:`ImageHead`."""

    def __init__(self, config: NASFEConfig) -> None:
        super().__init__()
        c_f, c_d = config.fusion_channels[0], config.dec_channels
        if config.fusion_down == 0:
            self.up = ConvBN(c_f, c_d, 1)
        else:
            steps: list[nn.Module] = []
            for i in range(config.fusion_down):
                steps += ([nn.ReLU()] if i else []) + [ConvBN(c_f if i == 0 else c_d, 4 * c_d, 3), nn.PixelShuffle(2)]
            self.up = nn.Sequential(*steps)
        self.skip = ConvBN(3 * config.enc_channels, c_d, 1)
        self.blocks = nn.Sequential(*(ResBlock(c_d) for _ in range(config.dec_blocks)))
        self.head = ImageHead(c_d, config.stem, config.head_smooth)

    def forward(self, fused: Tensor, skip: Tensor, x: Tensor) -> Tensor:
        return self.head(self.blocks(torch.relu(self.up(fused) + self.skip(skip))), x)


class NASFEShell(nn.Module):
    """The NASFE network around a fusion module (supernet or derived); see :mod:`engine.configs`.

    Subclasses pass the fusion module: ``fusion(h0) -> h`` on level-0 features ``(B, C0, h, w)``.
    """

    def __init__(self, config: NASFEConfig, fusion: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.classifier = DegradationClassifier(config)
        self.encoders = nn.ModuleDict({task: TaskEncoder(config) for task in CLASSES})
        self.entry = FusionEntry(config)
        self.identity_branch = IdentityInjection(config.fusion_channels[0], config.id_channels, config.fusion_channels[0])
        self.fusion = fusion
        self.decoder = Decoder(config)

    def classify(self, x: Tensor) -> Tensor:
        """Degradation probabilities ``(B, 3)`` (blur, noise, low light), sigmoid, multi-label."""
        return self.classifier.probabilities(x)

    def check_input(self, x: Tensor) -> None:
        """``ValueError`` unless ``x`` is ``(B, 3, H, W)`` with H, W multiples of the size multiple."""
        m = self.config.size_multiple
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] % m or x.shape[3] % m:
            raise ValueError(f"image: expected shape (B, 3, H, W) with H, W multiples of {m}, got {tuple(x.shape)}")

    def forward(
        self,
        x: Tensor,
        prior: Tensor | None = None,
        identity: Tensor | None = None,
        *,
        has_identity: Tensor | None = None,
    ) -> Tensor:
        """Restore a batch of aligned faces.

        Args:
            x: ``(B, 3, S, S)`` float32 RGB in [0, 1].
            prior: ``(B, 3)`` degradation probabilities, or ``None`` to use the built-in classifier
                (its output is detached: the classifier is trained on its own labels).
            identity: ``(B or 1, id_channels, h, w)`` identity prior (mean of instance-normalised
                reference features), or ``None`` (learned neutral embedding).
            has_identity: optional ``(B,)`` {0, 1} mask selecting per sample between ``identity``
                and the neutral embedding (used by the exported graph).

        Returns:
            ``(B, 3, S, S)`` restored RGB, nominally [0, 1], not clamped.
        """
        self.check_input(x)
        if prior is None:
            prior = self.classify(x).detach()
        x_stem = F.pixel_unshuffle(x, self.config.stem) if self.config.stem > 1 else x
        skip = torch.cat([encoder(x_stem, prior) for encoder in self.encoders.values()], dim=1)
        h0 = self.entry(skip, prior)
        h0 = h0 + self.identity_branch(h0, identity, has_identity)
        return self.decoder(self.fusion(h0), skip, x)

    def fuse(self) -> NASFEShell:
        """Fold every batch norm into its convolution, in place; returns ``self`` in eval mode.

        Inference only: the result computes what the eval-mode network computed.
        """
        fuse_modules(self)
        return self


class TaskPretrainNet(nn.Module):
    """One task encoder with a light image head, to pretrain E_B, E_N or E_L on its single task.

    ``net = TaskPretrainNet(config, "noise")``; train ``net(x)`` against clean images; then copy
    ``net.encoder`` into a full network (``model.encoders["noise"].load_state_dict(
    net.encoder.state_dict())`` or :func:`engine.build.load_weights` with ``prefix="encoder."``).
    """

    def __init__(self, config: NASFEConfig, task: str) -> None:
        super().__init__()
        if task not in CLASSES:
            raise ValueError(f"task must be one of {CLASSES}, got {task!r}")
        self.config = config
        self.task = task
        self.encoder = TaskEncoder(config)
        self.head = ImageHead(config.enc_channels, config.stem, config.head_smooth)

    def forward(self, x: Tensor, prior: Tensor | None = None) -> Tensor:
        """``x (B, 3, S, S)`` RGB [0, 1] -> restored ``(B, 3, S, S)``; ``prior`` defaults to the
        one-hot label of this encoder's task."""
        check_image_like(x, 3, "image")
        if prior is None:
            prior = torch.zeros(x.shape[0], len(CLASSES), device=x.device, dtype=x.dtype)
            prior[:, CLASSES.index(self.task)] = 1.0
        x_stem = F.pixel_unshuffle(x, self.config.stem) if self.config.stem > 1 else x
        return self.head(self.encoder(x_stem, prior), x)

"""Perceptual distances d(a, b) -> per-sample Tensor[B], used by the reconstruction loss, MCR and LPC.

The paper uses LPIPS, whose backbone weights download at run time; pae-lab is offline by default,
so the default is an LPIPS-style distance in the embedded EfficientNet-Lite0. Metrics computed
with it are named after it (`pd_effnet_lite0`), never passed off as LPIPS.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pae_lab.catalog import PERCEPTUAL


class PerceptualUnavailable(RuntimeError):
    """A perceptual distance whose package or local weights are missing; the message says how to fix it."""


class PerceptualDistance(nn.Module):
    """Base class: `forward(a01, b01) -> Tensor[B]`, images in [0, 1]; frozen, differentiable in the inputs.

    A distance is `compare(embed(a), embed(b))`; `embed` returns a list of per-sample feature
    tensors. Callers that compare several images with one (MCR's cascade with D(z), LPC's
    perturbations with the unperturbed decode) embed that one once and call `compare` directly,
    unless a subclass overrides `forward` (`embeds_separately`).
    `name` is the registry name (set by `build_perceptual`); `metric_name` is what trackers log.
    """

    name: str = ""

    @property
    def embeds_separately(self) -> bool:
        """Whether d(a, b) is exactly compare(embed(a), embed(b)), so an embedding may be reused: not for a
        subclass that overrides `forward`."""
        return type(self).forward is PerceptualDistance.forward

    @property
    def metric_name(self) -> str:
        return f"pd_{self.name}"

    def embed(self, x01: torch.Tensor) -> list[torch.Tensor]:
        """Features of a batch; identity by default (distances computed on pixels)."""
        return [x01]

    def compare(self, fa: list[torch.Tensor], fb: list[torch.Tensor]) -> torch.Tensor:  # pragma: no cover - abstract
        """Per-sample distance [B] between two embeddings."""
        raise NotImplementedError

    def forward(self, a01: torch.Tensor, b01: torch.Tensor) -> torch.Tensor:
        """A reference `b01` that needs no grad (a stop-gradient target) is embedded without a graph."""
        return self.scored(a01, b01)[0]

    def scored(self, a01: torch.Tensor, b01: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(d(a, b) [B], embed(a)): for a caller that later compares other images with `a` (MCR with D(z))."""
        if a01.shape != b01.shape or a01.dim() != 4:
            raise ValueError(
                f"perceptual distance needs two [B, 3, H, W] batches of equal shape; got {tuple(a01.shape)} vs {tuple(b01.shape)}"
            )
        with torch.set_grad_enabled(torch.is_grad_enabled() and b01.requires_grad):
            fb = self.embed(b01)
        fa = self.embed(a01)
        return self.compare(fa, fb), fa


def register_perceptual(name: str, cls: type[PerceptualDistance] | None = None, *, overwrite: bool = False):
    """Register a PerceptualDistance subclass; usable as `@register_perceptual("name")` or a plain call."""
    if cls is None:
        return lambda c: register_perceptual(name, c, overwrite=overwrite)
    return PERCEPTUAL.register(name, cls, overwrite=overwrite)


def build_perceptual(name: str, **params) -> PerceptualDistance:
    """Instantiate a registered distance by name with keyword parameters."""
    module = PERCEPTUAL.get(name)(**params)
    module.name = name
    return module


@register_perceptual("l2")
class L2Distance(PerceptualDistance):
    """Per-sample mean squared error: a cheap stand-in for tests and ablations (no network)."""

    def compare(self, fa: list[torch.Tensor], fb: list[torch.Tensor]) -> torch.Tensor:
        return (fa[0] - fb[0]).pow(2).flatten(1).mean(dim=1)


@register_perceptual("effnet_lite0")
class EffNetLite0Distance(PerceptualDistance):
    """LPIPS-style distance in the embedded EfficientNet-Lite0 feature space, with NO learned weights.

    Per block in `blocks`: unit-normalise the channel vector at each position, take the squared
    difference, average over positions and over channels; sum over blocks. Per block the value
    is (2 - 2 cos) / C averaged over positions, so it lies in [0, 4 / C]. LPIPS instead learns
    per-channel weights on the same squared differences; we have none to learn from offline.
    Inputs are bilinearly resized to `input_resolution` first: Lite0's early blocks have strides
    2/4/8, so a 32x32 image would leave a 4x4 map at block 4.
    """

    def __init__(self, blocks: tuple[int, ...] | list[int] = (0, 2, 4), input_resolution: int = 64):
        super().__init__()
        from analysis.effnet import load_efficientnet_lite0

        if not blocks:
            raise ValueError("effnet_lite0 distance needs at least one block index, e.g. blocks=(0, 2, 4)")
        self.blocks = [int(b) for b in blocks]
        self.input_resolution = int(input_resolution)
        # channels_last: ~25% less CPU time for these depthwise-heavy blocks, and the GPU's preferred layout
        self.backbone = load_efficientnet_lite0().to(memory_format=torch.channels_last)

    def train(self, mode: bool = True) -> "EffNetLite0Distance":
        """The backbone stays in eval mode (frozen BatchNorm statistics) whatever the parent does."""
        super().train(mode)
        self.backbone.eval()
        return self

    def embed(self, x01: torch.Tensor) -> list[torch.Tensor]:
        from analysis.effnet import block_features

        if x01.shape[-2:] != (self.input_resolution,) * 2:
            x01 = F.interpolate(x01, size=(self.input_resolution,) * 2, mode="bilinear", align_corners=False)
        x01 = x01.contiguous(memory_format=torch.channels_last)
        return [F.normalize(f, dim=1, eps=1e-10) for f in block_features(self.backbone, x01, self.blocks)]

    def compare(self, fa: list[torch.Tensor], fb: list[torch.Tensor]) -> torch.Tensor:
        return sum((x - y).pow(2).mean(dim=(1, 2, 3)) for x, y in zip(fa, fb))


@register_perceptual("lpips")
class LpipsDistance(PerceptualDistance):
    """Real LPIPS (the paper's distance), only from local files: needs the `lpips` package and
    the backbone's weights at `weights` (e.g. torchvision's alexnet-owt-7be5be79.pth for net='alex').

    The lpips package ships its linear-layer weights; only the backbone would download, which
    we forbid, so the backbone is built randomly initialised and then loaded from `weights`.
    """

    def __init__(self, weights: str | Path | None = None, net: str = "alex"):
        super().__init__()
        if importlib.util.find_spec("lpips") is None:
            raise PerceptualUnavailable(
                "perceptual distance 'lpips' needs the `lpips` package, which is not installed: "
                "`pip install lpips==0.1.4` (and pin it in pyproject.toml), then pass local backbone weights "
                "with build_perceptual('lpips', weights='/path/to/alexnet.pth'). The offline default is 'effnet_lite0'."
            )
        if weights is None or not Path(weights).is_file():
            raise PerceptualUnavailable(
                f"perceptual distance 'lpips' needs a local {net} backbone weights file (got weights={weights!r}): "
                "download it once on a machine with network (e.g. torchvision's alexnet-owt-7be5be79.pth) and pass "
                "build_perceptual('lpips', weights='/path/to/file'). Nothing is downloaded at run time."
            )
        import lpips  # type: ignore[import-not-found]

        # pretrained=True: lpips' linear heads, shipped inside the package; pnet_rand=True: the backbone
        # is built random (never downloaded) and loaded from the local `weights` file below.
        self.model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        missing, _ = self.model.net.load_state_dict(_lpips_backbone_state(self.model.net, state), strict=False)
        if missing:
            raise PerceptualUnavailable(f"weights file {weights} does not fit the lpips {net} backbone: missing {missing[:3]}...")
        self.model.eval().requires_grad_(False)

    @property
    def metric_name(self) -> str:
        return "lpips"

    def compare(self, fa: list[torch.Tensor], fb: list[torch.Tensor]) -> torch.Tensor:
        return self.model(fa[0], fb[0], normalize=True).flatten()  # embed is the identity: LPIPS runs here


def _lpips_backbone_state(net: nn.Module, state: dict) -> dict:
    """Map a torchvision `features.*` state dict onto lpips' sliced backbone (slice1..sliceN)."""
    mapped = {}
    for key in net.state_dict():
        _, index, leaf = key.split(".", 2) if key.count(".") >= 2 else (None, None, None)
        if index is not None and f"features.{index}.{leaf}" in state:
            mapped[key] = state[f"features.{index}.{leaf}"]
    return mapped

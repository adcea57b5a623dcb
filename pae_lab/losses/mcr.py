"""MCR, manifold continuity regularisation: small moves on the latent sphere must decode to small,
consistent image changes (a cascade: the large step is tied to the medium one, the medium to D(z))."""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from analysis.continuity import nn_angles
from pae_lab.losses.perceptual import PerceptualDistance
from pae_lab.losses.reconstruction import reconstruction_loss
from pae_lab.losses.regularizers import RegContext, Regularizer, register_regularizer

MODES = ("cascade", "medium", "large")


def rotate_toward(z: torch.Tensor, direction: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate every token z_i toward direction_i by `degrees` on its own sphere (norm kept).

    z_a = cos(a) z_i + sin(a) ||z_i|| u_i with u_i the unit component of direction_i orthogonal
    to z_i, so angle(z_i, z_a) = a exactly and ||z_a|| = ||z_i|| (the RMS norm is preserved).
    """
    a = math.radians(degrees)
    zhat = F.normalize(z, dim=1, eps=1e-12)
    u = F.normalize(direction - (direction * zhat).sum(dim=1, keepdim=True) * zhat, dim=1, eps=1e-12)
    return math.cos(a) * z + math.sin(a) * z.norm(dim=1, keepdim=True) * u


@register_regularizer("mcr")
class MCR(Regularizer):
    """[L1 + d](D(z_m), sg D(z)) + [L1 + d](D(z_l), sg D(z_m)), d = ctx.perceptual.

    Reading of the paper's "42.5 / 85 degrees": one Gaussian direction Delta per sample (shape of
    z), and each token is rotated toward its slice of Delta by the angle on its own sphere (the
    latent is RMS-normalised per token, so per-token rotation keeps it on the manifold the
    encoder produces). z_m and z_l lie on the same per-token geodesic, z_l (large - medium) degrees
    beyond z_m. sg D(z) reuses ctx.x_rec (no extra decode), and its perceptual features
    ctx.x_rec_features where the reconstruction loss computed them (no extra embedding).

    Scale: the paper's 42.5 / 85 degrees are for its d = 32 x 256-token latent, where images lie far
    apart on the sphere. In a small latent (8 channels x 64 tokens) another image's latent is often
    closer than 42.5 degrees, so the decoder can only honour such a step by blurring. With
    `relative=True` the angles are `medium_frac` / `large_frac` times the median nearest-neighbour
    angle between the batch's latents (detached, recomputed every step; `nn_angles`), so a step
    stays inside the image's own neighbourhood at any latent size; `medium_deg` / `large_deg` are
    then ignored. The angles used last are kept in `last_angles` (degrees).

    Params: medium_deg, large_deg (angles); relative, medium_frac, large_frac (see Scale); mode: 'cascade' (both terms), 'medium' (medium term
    only) or 'large' (D(z_l) vs sg D(z) only); cascade: in mode 'cascade', tie the large step to
    sg D(z_m) (True, the paper) or to sg D(z) (False); l1_weight, perceptual_weight: the term's
    mix (the paper: 1 and 1). Gradients reach encoder and decoder through D(z_m) and D(z_l) only.
    """


    def __init__(
        self,
        medium_deg: float = 42.5,
        large_deg: float = 85.0,
        mode: Literal["cascade", "medium", "large"] = "cascade",
        cascade: bool = True,
        l1_weight: float = 1.0,
        perceptual_weight: float = 1.0,
        relative: bool = False,
        medium_frac: float = 0.25,
        large_frac: float = 0.5,
    ):
        super().__init__()
        if relative and not 0 < medium_frac <= large_frac:
            raise ValueError(f"mcr fractions must satisfy 0 < medium_frac <= large_frac; got {medium_frac}, {large_frac}")
        self.relative, self.medium_frac, self.large_frac = bool(relative), float(medium_frac), float(large_frac)
        self.last_angles = (float(medium_deg), float(large_deg))
        if mode not in MODES:
            raise ValueError(f"mcr mode must be one of {', '.join(MODES)}; got {mode!r}")
        if not 0 < medium_deg <= 180 or not 0 < large_deg <= 180:
            raise ValueError(f"mcr angles must lie in (0, 180] degrees; got medium={medium_deg}, large={large_deg}")
        self.medium_deg, self.large_deg = float(medium_deg), float(large_deg)
        self.mode, self.cascade = mode, bool(cascade)
        self.l1_weight, self.perceptual_weight = float(l1_weight), float(perceptual_weight)

    def perturb(self, z: torch.Tensor, direction: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_m, z_l): z rotated toward one random direction (per sample) by the two angles."""
        direction = torch.randn_like(z) if direction is None else direction
        medium, large = self.angles(z)
        return rotate_toward(z, direction, medium), rotate_toward(z, direction, large)

    def angles(self, z: torch.Tensor) -> tuple[float, float]:
        """(medium, large) degrees for this batch: fixed, or relative to its median nearest-neighbour angle."""
        if self.relative and len(z) >= 2:
            scale = float(nn_angles(z).median())
            self.last_angles = (min(180.0, self.medium_frac * scale), min(180.0, self.large_frac * scale))
        elif not self.relative:
            self.last_angles = (self.medium_deg, self.large_deg)
        return self.last_angles

    def forward(self, ctx: RegContext) -> torch.Tensor:
        z_m, z_l = self.perturb(ctx.z)
        ref = ctx.x_rec.detach()
        if self.mode == "large":
            return self._term(ctx, ctx.decode(z_l), ref)
        x_m = ctx.decode(z_m)
        if self.mode == "medium":
            return self._term(ctx, x_m, ref)
        x_l = ctx.decode(z_l)
        if not self.cascade:
            return self._term(ctx, x_m, ref) + self._term(ctx, x_l, ref)
        return self._cascade(ctx, x_m, x_l, ref)

    def _term(self, ctx: RegContext, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return reconstruction_loss(target, out, ctx.perceptual, self.l1_weight, self.perceptual_weight)[0]

    @staticmethod
    @torch.no_grad()
    def _embedded(pd: PerceptualDistance, images: torch.Tensor) -> list[torch.Tensor]:
        return pd.embed(images)

    def _cascade(self, ctx: RegContext, x_m: torch.Tensor, x_l: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Both terms, embedding D(z_m) once: its detached features are the large term's target."""
        pd = ctx.perceptual
        if not isinstance(pd, PerceptualDistance) or not pd.embeds_separately or self.perceptual_weight == 0:
            return self._term(ctx, x_m, ref) + self._term(ctx, x_l, x_m.detach())
        l1 = (x_m - ref).abs().mean() + (x_l - x_m.detach()).abs().mean()
        f_m = pd.embed(x_m)
        f_ref = ctx.x_rec_features if ctx.x_rec_features is not None else self._embedded(pd, ref)
        dist = pd.compare(f_m, f_ref).mean() + pd.compare(pd.embed(x_l), [f.detach() for f in f_m]).mean()
        return self.l1_weight * l1 + self.perceptual_weight * dist

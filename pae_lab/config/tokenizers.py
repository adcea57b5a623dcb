"""The built-in tokenizer architectures' config models, registered by name (`conv`, `pae`, `external`).

Pydantic only: the networks live in `pae_lab.models.{tokenizer,pae,external}` and are named as
"module:function", imported only when a tokenizer is built (see `pae_lab.architectures`).
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pae_lab.architectures import ARCHITECTURES, ArchitectureConfig, register_architecture

NormName = Literal["group", "layer", "none"]
ActName = Literal["silu", "gelu", "relu"]
FusionName = Literal["scale_shift", "add", "concat", "none"]


class TokenizerConfig(ArchitectureConfig):
    """The `conv` architecture (no training settings: the orchestrator owns those)."""

    name: Literal["conv"] = Field("conv", description="`conv`: the pixel convolutional autoencoder.")
    base_channels: int = Field(32, ge=1, description="Channels of the first (full-resolution) level.")
    channel_mult: list[int] = Field(
        default_factory=lambda: [1, 2],
        min_length=1,
        description="Channel multiplier per level; each level ends in a stride-2 downsample, so the "
        "downsample factor is 2 ** len(channel_mult).",
    )
    num_res_blocks: int = Field(1, ge=0, description="Residual blocks per level (encoder and decoder each).")
    latent_channels: int = Field(16, ge=1, description="Channels C of the latent z; each token has RMS norm 1.")
    downsample: int = Field(
        4, ge=2, description="Spatial downsample factor f (32x32 image -> 32/f grid); must equal 2 ** len(channel_mult)."
    )
    norm: NormName = Field("group", description="Normalisation layer: 'group' (GroupNorm), 'layer' (one group), 'none'.")
    norm_groups: int = Field(8, ge=1, description="Groups for norm='group' (capped at the channel count).")
    activation: ActName = Field("silu", description="Activation function: 'silu', 'gelu' or 'relu'.")
    rms_eps: float = Field(1e-6, gt=0, description="eps in z / sqrt(mean_c(z^2) + eps), the per-token RMS normalisation.")

    @model_validator(mode="after")
    def _downsample_matches_levels(self) -> "TokenizerConfig":
        levels = len(self.channel_mult)
        if self.downsample != 2**levels:
            raise ValueError(
                f"downsample={self.downsample} does not match channel_mult={self.channel_mult}: each entry is one "
                f"stride-2 level, so {levels} entries give downsample={2**levels}. Give log2(downsample) "
                "channel_mult entries (e.g. [1, 2] for 4, [1, 2, 2] for 8) or set downsample to match."
            )
        if any(m < 1 for m in self.channel_mult):
            raise ValueError(f"channel_mult entries must be >= 1, got {self.channel_mult}")
        return self


class VFMConfig(BaseModel):
    """The frozen VFM inside the `pae` encoder: a prior registry entry (`pae-lab registry priors`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("effnet_lite0", description="Prior registry entry used as the frozen encoder.")
    params: dict[str, Any] = Field(default_factory=dict, description="Its keyword arguments, e.g. timm `model` and local `weights`.")


class PAEConfig(ArchitectureConfig):
    """The `pae` architecture: frozen VFM + DAM + compressor + RMS normalisation + ViT or conv decoder."""

    name: Literal["pae"] = Field("pae", description="`pae`: the paper-faithful tokenizer (frozen VFM, DAM, compressor).")
    vfm: VFMConfig = Field(default_factory=VFMConfig, description="Frozen VFM encoder (a prior backend).")
    fusion: FusionName = Field("scale_shift", description="How the DAM enters: scale_shift (paper, zero-init), add "
                               "(zero-init residual), concat, none (VFM only).")
    dam_depth: int = Field(2, ge=1, description="DAM blocks (self-attention, cross-attention to the VFM, MLP); the paper uses 6.")
    dam_width: int = Field(64, ge=8, description="Width of the DAM's pixel-patch tokens.")
    compressor_width: int = Field(64, ge=8, description="Width of the compressor's attention block before the 3x3 conv.")
    decoder: Literal["vit", "conv"] = Field("vit", description="Pixel decoder: vit (tokens -> f x f patches) or conv (the `conv` decoder).")
    decoder_width: int = Field(64, ge=8, description="Token width of the ViT decoder, or base_channels of the conv decoder.")
    decoder_depth: int = Field(2, ge=1, description="Transformer blocks of the ViT decoder (residual blocks per level for conv).")
    heads: int = Field(4, ge=1, description="Attention heads of every block (must divide each width).")
    mlp_ratio: float = Field(2.0, gt=0, description="Hidden width of every MLP over its token width.")
    rms_eps: float = Field(1e-6, gt=0, description="eps of the per-token RMS normalisation.")

    def local_files(self) -> list[tuple[str, str, str]]:
        weights = self.vfm.params.get("weights")
        return [("vfm.params.weights", weights, "VFM weights file")] if weights else []

    @model_validator(mode="after")
    def _shapes(self) -> "PAEConfig":
        widths = {"dam_width": self.dam_width, "compressor_width": self.compressor_width}
        if self.decoder == "vit":
            widths["decoder_width"] = self.decoder_width
        for key, width in widths.items():
            if width % self.heads:
                raise ValueError(f"{key}={width} is not divisible by heads={self.heads}")
        if self.decoder == "conv" and self.downsample & (self.downsample - 1):
            raise ValueError(f"decoder 'conv' needs a power-of-two downsample, got {self.downsample}")
        return self


class ExternalConfig(ArchitectureConfig):
    """The `external` architecture: a pretrained tokenizer loaded through an adapter; never trained."""

    name: Literal["external"] = Field("external", description="`external`: a pretrained tokenizer through an adapter.")
    latent_channels: int = Field(..., ge=1, description="Channels of the model's latent (checked when it is loaded).")
    downsample: int = Field(..., ge=1, description="The model's spatial downsample factor (checked when it is loaded).")
    adapter: str = Field("torchscript", description="Adapter registry entry: diffusers, ldm_kl, torchscript, state_dict, python "
                         "(`pae-lab registry adapters`).")
    path: str | None = Field(None, description="Local folder (diffusers) or file (ldm_kl .pt/.ckpt, torchscript, state_dict) of the model.")
    config: str | None = Field(None, description="The LDM YAML beside an ldm_kl checkpoint (`model.params.ddconfig`, `embed_dim`).")
    factory: str | None = Field(None, description="`module:callable` building the model (state_dict, python); the module may be a plugin.")
    params: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the factory (or of from_pretrained).")
    latent_norm: Literal["fit", "checkpoint"] = Field(
        "fit", description="Latent statistics the generator trains on: `fit` (per-channel mean/std of the training "
        "latents) or `checkpoint` (the ones the checkpoint ships: `latent_stats`, else its scaling/shift factor).")
    latent_stats: str | None = Field(None, description="With latent_norm: checkpoint, a torch file of per-channel "
                                     "`mean` and `std` (VA-VAE's latents_stats.pt).")

    def local_files(self) -> list[tuple[str, str, str]]:
        files = (("path", self.path, f"external tokenizer ({self.adapter})"), ("config", self.config, "LDM model config"),
                 ("latent_stats", self.latent_stats, "latent statistics file"))
        return [entry for entry in files if entry[1]]

    @model_validator(mode="after")
    def _stats_need_checkpoint_norm(self) -> "ExternalConfig":
        if self.latent_stats and self.latent_norm != "checkpoint":
            raise ValueError(f"latent_stats={self.latent_stats!r} is read only with latent_norm: checkpoint "
                             f"(got latent_norm: {self.latent_norm})")
        return self


register_architecture("conv", TokenizerConfig, "pae_lab.models.tokenizer:build_conv")
register_architecture("pae", PAEConfig, "pae_lab.models.pae:build_pae")
register_architecture("external", ExternalConfig, "pae_lab.models.external:build_external", trainable=False)

__all__ = ["ARCHITECTURES", "ExternalConfig", "PAEConfig", "TokenizerConfig", "VFMConfig"]  # the registry, built-ins in

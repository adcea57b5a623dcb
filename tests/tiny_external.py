"""Test plugin: a tiny randomly initialised autoencoder standing in for a user's own pretrained tokenizer."""
import torch
from torch import nn


class TinyAE(nn.Module):
    """Patchify conv encoder and transposed-conv decoder with the pae-lab contract (images in [0, 1])."""

    def __init__(self, channels: int = 6, factor: int = 4):
        super().__init__()
        self.enc = nn.Conv2d(3, channels, factor, stride=factor)
        self.dec = nn.ConvTranspose2d(channels, 3, factor, stride=factor)

    @torch.jit.export
    def encode(self, x01: torch.Tensor) -> torch.Tensor:
        return self.enc(x01 * 2.0 - 1.0)

    @torch.jit.export
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z) * 0.5 + 0.5

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x01))


def make(seed: int = 0, channels: int = 6) -> TinyAE:
    """A `python`-adapter factory: builds the model itself (seeded), nothing to load."""
    torch.manual_seed(seed)
    return TinyAE(channels)


# Tiny randomly initialised checkpoints in the formats people release (diffusers folders, LDM
# .pt + YAML), saved to a test's tmp folder: nothing is downloaded. diffusers is imported inside.

def save_kl(folder, *, scaling_factor: float = 0.18215, shift_factor: float | None = None, seed: int = 0):
    """An SD-VAE-style AutoencoderKL folder: f4, 4 latent channels."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                        block_out_channels=(8, 8, 16), layers_per_block=1, latent_channels=4, norm_num_groups=4,
                        sample_size=16, scaling_factor=scaling_factor, shift_factor=shift_factor).eval()
    vae.save_pretrained(folder)
    return vae


def save_dc(folder, seed: int = 0):
    """A DC-AE-style AutoencoderDC folder: f4, 4 latent channels, shipped scaling_factor 0.5."""
    from diffusers import AutoencoderDC

    torch.manual_seed(seed)
    three = ("ResBlock",) * 3
    dc = AutoencoderDC(latent_channels=4, attention_head_dim=8, encoder_block_types=three, decoder_block_types=three,
                       encoder_block_out_channels=(8, 8, 16), decoder_block_out_channels=(8, 8, 16),
                       encoder_layers_per_block=(1, 1, 1), decoder_layers_per_block=(1, 1, 1),
                       encoder_qkv_multiscales=((),) * 3, decoder_qkv_multiscales=((),) * 3,
                       upsample_block_type="interpolate", downsample_block_type="Conv", decoder_norm_types="rms_norm",
                       decoder_act_fns="silu", scaling_factor=0.5).eval()
    dc.save_pretrained(folder)
    return dc


def save_rae(folder, seed: int = 0, patch: int = 4):
    """An AutoencoderRAE folder: a 1-layer DINOv2 encoder reading 32 px (patch 8: a fixed 4 x 4 grid of 64
    channels) and a 1-layer decoder writing `patch` px patches, so 16 px images in, 4 * patch px out (needs transformers)."""
    from diffusers import AutoencoderRAE

    torch.manual_seed(seed)
    rae = AutoencoderRAE(encoder_type="dinov2", encoder_hidden_size=64, encoder_patch_size=8, encoder_num_hidden_layers=1,
                         decoder_hidden_size=32, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                         decoder_intermediate_size=64, patch_size=patch, encoder_input_size=32).eval()
    rae.save_pretrained(folder)
    return rae


LDM_DDCONFIG = {"double_z": True, "z_channels": 4, "resolution": 16, "in_channels": 3, "out_ch": 3, "ch": 32,
                "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [8], "dropout": 0.0}


def ldm_twin(seed: int = 0, decoder_attention: bool = True):
    """The AutoencoderKL that LDM_DDCONFIG describes, written out independently of the adapter: level 1
    works at 16 / 2 = 8 px, in attn_resolutions, so it has attention in the encoder and (unless MAR's
    layout, `decoder_attention=False`) in the decoder, whose first up block is level 1."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    up = "AttnUpDecoderBlock2D" if decoder_attention else "UpDecoderBlock2D"
    return AutoencoderKL(down_block_types=("DownEncoderBlock2D", "AttnDownEncoderBlock2D"),
                         up_block_types=(up, "UpDecoderBlock2D"), block_out_channels=(32, 64),
                         layers_per_block=1, latent_channels=4, norm_num_groups=32, sample_size=16).eval()


_TO_LDM = [  # diffusers AutoencoderKL names -> the LDM / taming names VA-VAE and MAR checkpoints use
    (r"down_blocks\.(\d+)\.resnets\.", r"down.\1.block."), (r"down_blocks\.(\d+)\.attentions\.", r"down.\1.attn."),
    (r"down_blocks\.(\d+)\.downsamplers\.0\.", r"down.\1.downsample."), (r"mid_block\.resnets\.0\.", "mid.block_1."),
    (r"mid_block\.resnets\.1\.", "mid.block_2."), (r"mid_block\.attentions\.0\.", "mid.attn_1."),
    (r"conv_shortcut", "nin_shortcut"), (r"conv_norm_out", "norm_out"), (r"group_norm", "norm"),
    (r"to_([qkv])\.", r"\1."), (r"to_out\.0\.", "proj_out."),
]


def to_ldm_state(vae) -> dict:
    """`vae`'s weights under LDM names: up levels counted from the bottom, attention as 1x1 convolutions."""
    import re

    levels = len(vae.config.up_block_types)
    out = {}
    for key, value in vae.state_dict().items():
        up = re.match(r"decoder\.up_blocks\.(\d+)\.(resnets|attentions|upsamplers\.0)\.(.*)", key)
        if up:
            part = {"resnets": "block", "attentions": "attn", "upsamplers.0": "upsample"}[up.group(2)]
            key = f"decoder.up.{levels - 1 - int(up.group(1))}.{part}.{up.group(3)}"
        for pattern, repl in _TO_LDM:
            key = re.sub(pattern, repl, key)
        attention = re.search(r"\.(attn\.\d+|attn_1)\.(q|k|v|proj_out)\.weight$", key)
        out[key] = value[:, :, None, None] if attention else value
    return out


def save_ldm(folder, seed: int = 0):
    """VA-VAE's layout: a Lightning-style {"state_dict": ...} .pt (with a training-only loss. tensor), the
    LDM YAML beside it and a latents_stats.pt of per-channel mean / std, shaped [1, C, 1, 1]."""
    import yaml
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vae = ldm_twin(seed)
    torch.save({"state_dict": {**to_ldm_state(vae), "loss.logvar": torch.zeros(())}}, folder / "vae.pt")
    (folder / "vae.yaml").write_text(yaml.safe_dump({"model": {"target": "ldm.models.autoencoder.AutoencoderKL", "params": {
        "embed_dim": 4, "ddconfig": LDM_DDCONFIG}}}))
    torch.save({"mean": torch.tensor([0.1, -0.2, 0.3, 0.0]).view(1, 4, 1, 1),
                "std": torch.tensor([1.0, 2.0, 0.5, 4.0]).view(1, 4, 1, 1)}, folder / "latents_stats.pt")
    return vae

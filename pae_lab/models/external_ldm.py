"""The `ldm_kl` adapter: an LDM-format KL autoencoder (`.pt` / `.ckpt` + its YAML), as VA-VAE, MAR and REPA-E ship.

The network is diffusers' AutoencoderKL: the YAML's `model.params.ddconfig` and `embed_dim` map
onto its arguments, and diffusers' own LDM converter (`convert_ldm_vae_checkpoint`, the one
`from_single_file` uses) renames the weights, so no network is written here. A ddconfig that
AutoencoderKL cannot reproduce is refused, naming the key. Needs the `[diffusers]` extra.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from pae_lab.config.tokenizers import ExternalConfig
from pae_lab.config.yaml_strict import load_strict
from pae_lab.models.external import local_path, register_adapter
from pae_lab.catalog import DIFFUSERS_CLASSES
from pae_lab.models.external_diffusers import DiffusersAutoencoder, import_diffusers

WRAPPERS = ("state_dict", "model")  # Lightning checkpoints nest the weights under state_dict, MAR under model
PARTS = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")  # the rest (loss., foundation_model., ...) is training-only

# LDM gives encoder and decoder one attn_resolutions; MAR's decoder has none while its encoder has
# (16,), which `decoder_attn_resolutions` (pae-lab's key, absent: the same as the encoder) says.
ATTENTION_KEYS = ("attn_resolutions", "decoder_attn_resolutions")
NEEDED = ("ch", "ch_mult", "num_res_blocks", "z_channels", "resolution")  # the ddconfig keys the mapping reads
# ddconfig keys AutoencoderKL has no counterpart for: the value it needs, and why.
FIXED: dict[str, tuple[Any, str]] = {
    "double_z": (True, "AutoencoderKL's encoder always outputs mean and log-variance"),
    "resamp_with_conv": (True, "AutoencoderKL resamples with convolutions"),
    "attn_type": ("vanilla", "AutoencoderKL's attention is the vanilla single-head block"),
    "use_linear_attn": (False, "AutoencoderKL has no linear attention"),
    "give_pre_end": (False, "AutoencoderKL's decoder always ends in conv_out"),
    "tanh_out": (False, "AutoencoderKL's decoder has no tanh"),
}


def _refuse(where: Path, key: str, value: Any, why: str) -> None:
    raise ValueError(f"tokenizer.config: {where} {key}={value!r} cannot be rebuilt as a diffusers AutoencoderKL: {why}")


def model_params(where: Path) -> dict[str, Any]:
    """`model.params` of an LDM YAML (a first-stage config), or of its `first_stage_config` (a full LDM config)."""
    raw = load_strict(where) or {}  # a duplicate key or a syntax error: one line with file and line
    params = (raw.get("model") or {}).get("params") or {}
    params = (params.get("first_stage_config") or {}).get("params", params)
    for key in ("ddconfig", "embed_dim"):
        if key not in params:
            raise ValueError(f"tokenizer.config: {where} has no model.params.{key} (an LDM autoencoder YAML has both)")
    return {**params, "scale_factor": ((raw.get("model") or {}).get("params") or {}).get("scale_factor")}


def _levels_with_attention(dd: dict[str, Any], key: str) -> list[bool]:
    """Per level, whether LDM puts attention there: level i works at resolution / 2**i."""
    return [dd["resolution"] // 2**i in set(dd.get(key) or ()) for i in range(len(dd["ch_mult"]))]


def autoencoder_kl_config(params: dict[str, Any], where: Path) -> dict[str, Any]:
    """AutoencoderKL's arguments for an LDM ddconfig + embed_dim, or one line naming the key it cannot take."""
    dd = params["ddconfig"]
    lacking = [key for key in NEEDED if key not in dd]
    if lacking:
        raise ValueError(f"tokenizer.config: {where} model.params.ddconfig lacks {', '.join(lacking)}")
    for key, (needed, why) in FIXED.items():
        if key in dd and dd[key] != needed:
            _refuse(where, f"model.params.ddconfig.{key}", dd[key], why)
    if params["embed_dim"] != dd["z_channels"]:
        _refuse(where, "model.params.embed_dim", params["embed_dim"],
                f"its quant_conv keeps the width z_channels={dd['z_channels']}")
    resolutions = {dd["resolution"] // 2**i for i in range(len(dd["ch_mult"]))}
    for key in ATTENTION_KEYS:
        stray = sorted(set(dd.get(key) or ()) - resolutions)
        if stray:
            _refuse(where, f"model.params.ddconfig.{key}", stray, f"no level works at that resolution ({sorted(resolutions)})")
    encoder = _levels_with_attention(dd, "attn_resolutions")
    decoder = _levels_with_attention(dd, "decoder_attn_resolutions") if "decoder_attn_resolutions" in dd else encoder
    return {
        "in_channels": dd.get("in_channels", 3), "out_channels": dd.get("out_ch", 3),
        "down_block_types": ["AttnDownEncoderBlock2D" if a else "DownEncoderBlock2D" for a in encoder],
        "up_block_types": ["AttnUpDecoderBlock2D" if a else "UpDecoderBlock2D" for a in reversed(decoder)],
        "block_out_channels": [dd["ch"] * m for m in dd["ch_mult"]], "layers_per_block": dd["num_res_blocks"],
        "latent_channels": dd["z_channels"], "norm_num_groups": 32, "sample_size": dd["resolution"],
        "scaling_factor": params["scale_factor"] or 1.0,
    }


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The autoencoder's tensors from an LDM checkpoint, unwrapped from Lightning's `state_dict` or MAR's `model`,
    without the prefix a whole latent-diffusion checkpoint puts on them (`first_stage_model.`, diffusers' list)."""
    from diffusers.loaders.single_file_utils import LDM_VAE_KEYS

    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors have no common type
        raise ValueError(f"tokenizer.path: {path} does not load as plain tensors ({type(exc).__name__}); "
                         "save its state_dict with torch.save") from None
    for key in WRAPPERS:
        if isinstance(blob, dict) and isinstance(blob.get(key), dict):
            blob = blob[key]
    prefix = next((p for p in LDM_VAE_KEYS if any(k.startswith(p + PARTS[0]) for k in blob)), "")
    ours = {k[len(prefix):]: v for k, v in blob.items() if k.startswith(prefix)}
    return {k: v for k, v in ours.items() if k.startswith(PARTS)}


def _block_attentions(state: dict[str, torch.Tensor], config: dict[str, Any], out: dict[str, torch.Tensor],
                      update: Callable) -> None:
    """Attention inside down / up levels (VA-VAE's at 16 px), which diffusers' converter leaves for the mid block only."""
    levels = len(config["down_block_types"])
    for i in range(levels):
        for ldm, new in ((f"encoder.down.{i}.attn", f"encoder.down_blocks.{i}.attentions"),
                         (f"decoder.up.{levels - 1 - i}.attn", f"decoder.up_blocks.{i}.attentions")):
            update([k for k in state if k.startswith(ldm + ".")], out, state, mapping={"old": ldm, "new": new})


def to_diffusers(state: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint, update_vae_attentions_ldm_to_diffusers

    out = {k: v for k, v in convert_ldm_vae_checkpoint(state, config).items()
           if ".down." not in k and ".up." not in k}  # level attentions it misnames, redone below
    _block_attentions(state, config, out, update_vae_attentions_ldm_to_diffusers)
    return out


@register_adapter("ldm_kl")
def ldm_kl_adapter(cfg: ExternalConfig) -> nn.Module:
    weights, yaml_file = local_path(cfg, "file"), local_path(cfg, "file", "config")
    diffusers = import_diffusers(cfg.adapter)
    params = model_params(yaml_file)
    config = autoencoder_kl_config(params, yaml_file)
    vae = diffusers.AutoencoderKL(**config)
    missing, unexpected = vae.load_state_dict(to_diffusers(read_weights(weights), config), strict=False)
    if missing or unexpected:
        raise ValueError(f"tokenizer.path: {weights} does not fit the AutoencoderKL that {yaml_file} describes: "
                         f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}")
    scale = (float(params["scale_factor"]), 0.0) if params["scale_factor"] else None
    return DiffusersAutoencoder(vae, DIFFUSERS_CLASSES.get("AutoencoderKL"), cfg.downsample, str(yaml_file), scale)

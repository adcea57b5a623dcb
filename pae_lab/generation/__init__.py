"""Latent generation: the flow-matching objective and the ODE samplers that invert it."""
from pae_lab.config.schema import SamplerConfig
from pae_lab.generation.flow import TIME_SAMPLING, flow_matching_loss, interpolate
from pae_lab.generation.samplers import (
    SAMPLERS,
    balanced_labels,
    generate_latents,
    guided_velocity,
    sample,
    time_grid,
)

__all__ = [
    "TIME_SAMPLING", "flow_matching_loss", "interpolate", "SAMPLERS", "SamplerConfig", "balanced_labels",
    "generate_latents", "guided_velocity", "sample", "time_grid",
]

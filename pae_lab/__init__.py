"""pae-lab: ablation studies of latent-diffusion tokenizers, tracked end to end."""
__version__ = "0.2.0"

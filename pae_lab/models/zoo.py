"""The built-in tokenizer architectures; importing this module registers them (`conv`, `pae`, `external`)."""
from pae_lab.architectures import ARCHITECTURES
from pae_lab.models import external, pae, tokenizer  # noqa: F401  (built-ins register on import)

__all__ = ["ARCHITECTURES"]

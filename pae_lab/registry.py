"""`pae_lab.registry`, the import path plugins use: the one Registry class lives in analysis/, the
bottom layer, so the metrics library and pae_lab register the same way."""
from analysis.registry import Registry, RegistryError, check_params, entry_named  # noqa: F401  (re-exported)

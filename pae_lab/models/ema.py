"""Exponential moving average of a model's weights, for evaluation with smoother parameters.

Generic over any nn.Module (tokenizer or generator): the shadow is a frozen deep copy whose
floating-point parameters and buffers track the live model; integer buffers (BatchNorm counters)
are copied as they are.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class EMA:
    """shadow <- d * shadow + (1 - d) * live, after each optimiser step.

    With `warmup=True` the decay used at update n is min(decay, (1 + n) / (10 + n)), so a short
    run (a few hundred steps on a CPU) is not dominated by the random initial weights.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, *, warmup: bool = True):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1], got {decay}")
        self.decay = float(decay)
        self.warmup = warmup
        self.num_updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        """The decay the next `update` will use."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        live = _tensors(model)
        for name, shadow in _tensors(self.module).items():
            source = live[name].detach()
            if shadow.is_floating_point():
                shadow.lerp_(source.to(shadow.dtype), 1.0 - d)
            else:
                shadow.copy_(source)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite `model`'s weights with the averaged ones (e.g. before export)."""
        live = _tensors(model)
        for name, shadow in _tensors(self.module).items():
            live[name].copy_(shadow)

    def to(self, *args: Any, **kwargs: Any) -> "EMA":
        self.module.to(*args, **kwargs)
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates,
                "module": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay = float(state["decay"])
        self.warmup = bool(state["warmup"])
        self.num_updates = int(state["num_updates"])
        self.module.load_state_dict(state["module"])


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers by name: everything an averaged copy must follow."""
    out = dict(model.named_parameters())
    out.update(model.named_buffers())
    return out

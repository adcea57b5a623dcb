"""Which way is better for each metric, so a correlation's sign can be checked against expectation."""
from __future__ import annotations

from typing import Literal, Mapping

Direction = Literal["higher", "lower"]

DIRECTIONS: dict[str, Direction] = {
    # the paper's three properties
    "ssc": "higher", "lpc": "lower", "gsq": "higher",
    # the rest of the panel (lip_*: a smoother map is the property MCR asks for)
    "coherence": "higher", "linprobe": "higher", "knn": "higher", "lip_enc": "lower", "lip_dec": "lower",
    # reconstruction and generation
    "psnr": "higher", "ssim": "higher", "lpips": "lower", "rfid": "lower", "gfid": "lower",
    "fid": "lower", "kid": "lower", "fd": "lower", "rfd": "lower", "kd": "lower", "rkd": "lower", "isc": "higher", "precision": "higher", "recall": "higher",
    # learnability (analysis.fidelity.FidelityColumns): generated vs own reconstructions, floors, val loss
    "lfd": "lower", "lkd": "lower", "floor_fd": "lower", "floor_kd": "lower", "noise_fd": "lower",
    "noise_kd": "lower", "gen_val_loss": "lower",
}


def direction_of(name: str, directions: Mapping[str, str] = DIRECTIONS) -> str | None:
    """The known direction of a metric column, or None.

    Tries the name, its last '/'-component lower-cased ("eval/LPC" -> "lpc"), then that with
    trailing '_'-parts removed one at a time ("lpc_rho0.1" -> "lpc", "lip_dec_max" -> "lip_dec").
    """
    if name in directions:
        return directions[name]
    parts = name.rsplit("/", 1)[-1].lower().split("_")
    for end in range(len(parts), 0, -1):
        if (key := "_".join(parts[:end])) in directions:
            return directions[key]
    return None

"""Latent normalisation: one stored object normalises for the generator and de-normalises for decoding."""
from pathlib import Path

import torch

from pae_lab.models.latent_norm import LatentNorm


def test_fit_normalises_each_channel() -> None:
    z = torch.randn(64, 4, 8, 8) * torch.tensor([1.0, 2.0, 0.5, 3.0]).view(1, 4, 1, 1) + torch.tensor([0.0, 1.0, -2.0, 5.0]).view(1, 4, 1, 1)
    norm = LatentNorm.fit(z)
    n = norm.normalize(z)
    assert torch.allclose(n.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-5)
    assert torch.allclose(n.std(dim=(0, 2, 3)), torch.ones(4), atol=1e-3)


def test_round_trip_through_the_saved_file(tmp_path: Path) -> None:
    z = torch.randn(16, 3, 4, 4) * 3 + 1
    norm = LatentNorm.fit(z)
    norm.save(tmp_path / "latent_norm.json")
    loaded = LatentNorm.load(tmp_path / "latent_norm.json")
    assert loaded == norm
    assert torch.allclose(loaded.denormalize(norm.normalize(z)), z, atol=1e-5)


def test_missing_statistics_name_the_file(tmp_path: Path) -> None:
    import pytest

    with pytest.raises(FileNotFoundError, match="latent_norm.json"):
        LatentNorm.load(tmp_path / "latent_norm.json")


def test_fit_batches_matches_fit_on_the_whole() -> None:
    z = torch.randn(37, 4, 3, 3) * torch.tensor([1.0, 2.0, 0.5, 3.0]).view(1, 4, 1, 1) + 5
    whole, streamed = LatentNorm.fit(z), LatentNorm.fit_batches(z[i:i + 8] for i in range(0, 37, 8))
    assert max(abs(a - b) for a, b in zip(whole.mean + whole.std, streamed.mean + streamed.std)) < 1e-9

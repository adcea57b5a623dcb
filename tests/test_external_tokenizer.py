"""External tokenizers through the adapter registry: tiny random models saved to tmp and loaded back."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from pae_lab.architectures import build_tokenizer
from pae_lab.config.errors import StudyError
from pae_lab.plan.preflight import load_study
from pae_lab.plan.preflight import missing_files
from tiny_external import TinyAE

X = torch.rand(3, 3, 16, 16)


def _external(**cfg):
    return build_tokenizer({"name": "external", "latent_channels": 6, "downsample": 4, **cfg})


def _same(model: torch.nn.Module, tok) -> None:
    with torch.no_grad():
        torch.testing.assert_close(tok.encode(X), model.encode(X), rtol=0, atol=0)
        z = model.encode(X)
        torch.testing.assert_close(tok.decode(z), model.decode(z), rtol=0, atol=0)


@pytest.fixture
def tiny():
    torch.manual_seed(1)
    return TinyAE().eval()


def test_torchscript_file(tmp_path: Path, tiny) -> None:
    path = tmp_path / "tiny.pt"
    torch.jit.script(tiny).save(str(path))
    tok = _external(adapter="torchscript", path=str(path))
    _same(tiny, tok)
    assert tok.latent_shape(16, 16) == (6, 4, 4) and not any(p.requires_grad for p in tok.parameters())
    tok.train()
    assert not tok.training


def test_state_dict_with_a_user_class(tmp_path: Path, tiny) -> None:
    path = tmp_path / "tiny_state.pt"
    torch.save(tiny.state_dict(), path)
    _same(tiny, _external(adapter="state_dict", path=str(path), factory="tiny_external:TinyAE"))


def test_python_factory_from_a_plugin(tiny) -> None:
    torch.manual_seed(5)
    reference = TinyAE(channels=3)
    tok = _external(adapter="python", factory="tiny_external:make", params={"seed": 5, "channels": 3}, latent_channels=3)
    _same(reference, tok)


def test_missing_folder_is_one_line_naming_key_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError) as err:
        _external(adapter="diffusers", path=str(missing))
    assert str(err.value) == f"tokenizer.path: folder {missing} does not exist (adapter 'diffusers')"


def test_wrong_latent_shape_names_file_keys_and_values(tmp_path: Path, tiny) -> None:
    path = tmp_path / "tiny.pt"
    torch.jit.script(tiny).save(str(path))
    _external(adapter="torchscript", path=str(path)).probe(16)  # the right shape passes
    with pytest.raises(ValueError) as err:
        _external(adapter="torchscript", path=str(path), latent_channels=8).probe(24)
    assert str(err.value) == (f"tokenizer: the torchscript model at {path} maps a 24x24 image (data.resolution=24) to a "
                              "latent of shape (6, 6, 6); tokenizer.latent_channels=8 and tokenizer.downsample=4 expect (8, 6, 6)")


def test_unknown_adapter_and_bad_factory() -> None:
    with pytest.raises(KeyError, match="unknown tokenizer adapter 'onnx'; registered: diffusers, ldm_kl, python, state_dict, torchscript"):
        _external(adapter="onnx")
    with pytest.raises(ValueError, match="tokenizer.factory: cannot import 'tiny_external:Nope'"):
        _external(adapter="python", factory="tiny_external:Nope")


def test_dry_run_lists_missing_variant_checkpoints(tmp_path: Path) -> None:
    study = {"name": "zoo", "variants": ["baseline", {"name": "sd", "tokenizer": {
        "name": "external", "adapter": "diffusers", "path": str(tmp_path / "sd-vae"), "latent_channels": 4, "downsample": 8}}]}
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump(study))
    loaded = load_study(path, check_files=False)
    assert missing_files(loaded) == [("variants[1].tokenizer.path", f"external tokenizer (diffusers) not found: "
                                      f"{str(tmp_path / 'sd-vae')!r} (paths are relative to the working directory)")]
    with pytest.raises(StudyError, match=r"variants\[1\].tokenizer.path: external tokenizer \(diffusers\) not found"):
        load_study(path)


def test_variant_tokenizer_checks(tmp_path: Path) -> None:
    def fails(variant: dict, match: str) -> None:
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump({"name": "bad", "variants": [variant]}))
        with pytest.raises(StudyError, match=match):
            load_study(path, check_files=False)

    ext = {"name": "external", "adapter": "torchscript", "path": "x.pt", "latent_channels": 4, "downsample": 4}
    fails({"name": "a", "tokenizer": {**ext, "pth": 1}}, r"variants\[0\].tokenizer.pth: Extra inputs")
    fails({"name": "a", "tokenizer": ext, "regularizers": {"ssr": {}}}, r"variants\[0\].regularizers: \['ssr'\] cannot act")
    fails({"name": "a", "tokenizer": {"name": "conv", "latent_channels": 8}, "regularizers": {"ssr": {}}},
          r"must keep the study's \(latent_channels")
    fails({"name": "a", "tokenizer": {"name": "conv", "channel_mult": [1, 2, 3], "downsample": 8}}, r"must keep the study's")
    width = tmp_path / "width.yaml"  # an unregularized baseline at another width: the frontier's width arm
    width.write_text(yaml.safe_dump({"name": "w", "variants": ["baseline", {"name": "w2", "base": "baseline",
                                                                            "tokenizer": {"name": "conv", "latent_channels": 2}}]}))
    assert load_study(width, check_files=False).variants[1]["tokenizer"]["latent_channels"] == 2
    fails({"name": "a", "tokenizer": {**ext, "adapter": "onnx"}}, r"variants\[0\].tokenizer.adapter: unknown tokenizer adapter 'onnx'")
    fails({"name": "a", "tokenizer": {"name": "pae", "latent_channels": 16, "vfm": {"name": "clip"}}},
          r"variants\[0\].tokenizer.vfm.name: unknown prior 'clip'")
    fails({"name": "a", "tokenizer": {**ext, "downsample": 3}}, r"data.resolution: 32 is not divisible by variants\[0\].tokenizer.downsample")


def test_a_variant_tokenizer_enters_only_its_own_runs_identity(tmp_path: Path, tiny) -> None:
    """Its block and its checkpoint's contents are the tokenizer stage's inputs; shared stages never see them."""
    import os

    from pae_lab.plan.runs import expand
    from pae_lab.config.schema import StudyConfig

    checkpoint = tmp_path / "ts.pt"
    torch.jit.script(tiny).save(str(checkpoint))
    ext = {"name": "external", "adapter": "torchscript", "path": str(checkpoint), "latent_channels": 6, "downsample": 4}
    study = StudyConfig.model_validate({"name": "ids", "output_dir": str(tmp_path / "out"),
                                        "variants": ["baseline", {"name": "ext", "tokenizer": ext}]})
    base, own = expand(study)
    assert {k: base.hashes[k] for k in ("data", "prior", "refine")} == {k: own.hashes[k] for k in ("data", "prior", "refine")}
    assert base.config["tokenizer"]["name"] == "conv" and own.config["tokenizer"] == {**own.config["tokenizer"], **ext}
    assert own.study_config().tokenizer.adapter == "torchscript"

    torch.manual_seed(5)
    torch.jit.script(TinyAE().eval()).save(str(checkpoint))  # another model under the same path
    os.utime(checkpoint, ns=(1, 1))
    base2, own2 = expand(study)
    assert base2.hashes == base.hashes and own2.hashes["tokenizer"] != own.hashes["tokenizer"]

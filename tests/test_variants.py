"""Variants: built-ins resolve, inline overrides, user extensions, and errors that name the culprit."""
import pytest
import torch

from pae_lab.losses import RegContext, Regularizer, register_regularizer
from pae_lab.registry import RegistryError
from pae_lab.variants import VARIANTS, Variant, VariantError, get_variant, register_variant, resolve_variant

BUILTINS = ["baseline", "ssr", "mcr", "scr", "ssr_mcr", "ssr_scr", "mcr_scr", "pae", "vavae"]


# A user's own regularizer and variant, registered from outside pae-lab through the public calls.
@register_regularizer("test_total_variation")
class TotalVariation(Regularizer):
    """Mean absolute difference of neighbouring latent tokens (smooth latents)."""

    default_weight = 0.05

    def __init__(self, axis: str = "both"):
        super().__init__()
        if axis not in ("both", "h", "w"):
            raise ValueError(f"axis must be both, h or w; got {axis!r}")
        self.axis = axis

    def forward(self, ctx: RegContext) -> torch.Tensor:
        dh = (ctx.z[:, :, 1:] - ctx.z[:, :, :-1]).abs().mean()
        dw = (ctx.z[..., 1:] - ctx.z[..., :-1]).abs().mean()
        return {"both": dh + dw, "h": dh, "w": dw}[self.axis]


register_variant("test_pae_tv", {"test_total_variation": {"axis": "h"}}, "PAE plus smoothness", base="pae")


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_resolves_and_builds(name):
    v = resolve_variant(name)
    assert v.name == name and v.description
    regs = v.build(latent_channels=16, vfm_dim=40)
    assert set(regs) == set(v.regularizers)
    assert all(w > 0 for w in v.weights.values())


def test_builtin_contents_and_paper_weights():
    assert get_variant("baseline").regularizers == {}
    assert get_variant("pae").weights == {"ssr": 0.2, "mcr": 0.5, "scr": 1.0}
    assert get_variant("ssr_scr").weights == {"ssr": 0.2, "scr": 1.0}
    assert get_variant("vavae").weights == {"vf": 0.1}
    assert get_variant("pae").needs == {"target"} and get_variant("vavae").needs == {"vfm"}
    assert get_variant("baseline").needs == frozenset()
    assert {n for n in VARIANTS.names("ssr*")} == {"ssr", "ssr_mcr", "ssr_scr"}


def test_inline_override_extend_and_remove():
    v = resolve_variant(
        {
            "name": "pae_medium_only",
            "base": "pae",
            "regularizers": {"mcr": {"mode": "medium"}, "scr": 0, "ssr": None, "vf": 0.3, "se": {}},
        }
    )
    assert v.regularizers == {"mcr": {"weight": 0.5, "mode": "medium"}, "vf": {"weight": 0.3}, "se": {"weight": 0.25}}
    assert v.build(latent_channels=8, vfm_dim=8)["mcr"].mode == "medium"
    again = resolve_variant({"name": "x", "base": "pae", "regularizers": {"ssr": {"weight": None}, "mcr": {"weight": 0.7}}})
    assert again.regularizers == {"mcr": {"weight": 0.7}, "scr": {"weight": 1.0}}
    # no base: only what is listed; the base itself is untouched
    assert resolve_variant({"name": "solo", "regularizers": {"ssr": 0.4}}).weights == {"ssr": 0.4}
    assert get_variant("pae").weights == {"ssr": 0.2, "mcr": 0.5, "scr": 1.0}
    assert resolve_variant(get_variant("pae")) is get_variant("pae")


def test_user_regularizer_and_variant_from_outside():
    v = get_variant("test_pae_tv")
    assert v.weights == {"ssr": 0.2, "mcr": 0.5, "scr": 1.0, "test_total_variation": 0.05}
    reg = v.build()["test_total_variation"]
    z = torch.zeros(1, 2, 3, 3)
    z[:, :, 1:] = 1.0  # one step in h over 2 of 3 rows
    ctx = RegContext(x=torch.zeros(1, 3, 3, 3), z=z, x_rec=torch.zeros(1, 3, 3, 3), decode=lambda t: t)
    assert float(reg(ctx)) == pytest.approx(0.5)  # h-differences: half are 1


def test_variant_is_a_plain_serialisable_record():
    v = get_variant("pae")
    assert Variant.model_validate(v.model_dump()) == v
    with pytest.raises(Exception):
        v.name = "other"  # frozen: a registered variant cannot drift


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"name": "bad1", "regularizers": {"ssrr": {}}}, r"variant 'bad1': unknown regularizer 'ssrr'; registered: .*ssr"),
        ({"name": "bad2", "regularizers": {"mcr": {"angle": 10}}}, r"variant 'bad2': regularizer 'mcr' has no parameter 'angle'; it accepts: medium_deg"),
        ({"name": "bad3", "regularizers": {"mcr": {"mode": "huge"}}}, r"variant 'bad3': regularizer 'mcr' rejects params .*mode must be one of"),
        ({"name": "bad4", "regularizers": {"scr": {"weight": -1}}}, r"variant 'bad4': regularizer 'scr' has weight -1"),
        ({"name": "bad5", "regularizers": {"scr": "heavy"}}, r"variant 'bad5': regularizer 'scr' must map to a weight or a dict"),
        ({"name": "bad6", "regularizer": {}}, r"unknown key\(s\) \['regularizer'\]"),
        ({"regularizers": {}}, r"needs a 'name'"),
        ({"name": "bad8", "base": "paee", "regularizers": {}}, r"unknown variant 'paee'; registered: .*pae"),
        ({"name": "bad9", "regularizers": {"test_total_variation": {"axis": "z"}}}, r"'test_total_variation' rejects .*axis must be"),
        (42, r"registered name or a dict"),
    ],
)
def test_bad_variants_name_the_culprit(spec, message):
    with pytest.raises((VariantError, RegistryError), match=message):
        resolve_variant(spec)


def test_register_variant_errors():
    with pytest.raises(VariantError, match=r"variant 'broken': regularizer 'ssr' has no parameter 'pooled'"):
        register_variant("broken", {"ssr": {"pooled": True}})
    assert "broken" not in VARIANTS  # nothing half-registered
    with pytest.raises(RegistryError, match="already registered"):
        register_variant("pae", {})
    with pytest.raises(RegistryError, match="unknown variant 'nope'"):
        get_variant("nope")

"""Regularizers (SSR / MCR / SCR / VF / SE), perceptual distances and the reconstruction loss."""
import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from pae_lab.losses import (
    PERCEPTUAL,
    REGULARIZERS,
    PerceptualUnavailable,
    RegContext,
    Regularizer,
    build_perceptual,
    build_regularizer,
    reconstruction_loss,
    reconstruction_terms,
    register_regularizer,
)
from pae_lab.losses.mcr import MCR as MCRType
from pae_lab.losses.mcr import rotate_toward
from pae_lab.models.tokenizer import rms_normalize
from pae_lab.registry import RegistryError


def sphere(*shape: int) -> torch.Tensor:
    return rms_normalize(torch.randn(*shape))


def ctx_for(z: torch.Tensor, decode=None, **kw) -> RegContext:
    decode = decode or (lambda v: v[:, :3].repeat_interleave(4, -1).repeat_interleave(4, -2))
    x_rec = decode(z)
    return RegContext(x=torch.rand_like(x_rec), z=z, x_rec=x_rec, decode=decode, **kw)


@pytest.fixture(scope="module")
def effnet():
    return build_perceptual("effnet_lite0")


# --- registry ---------------------------------------------------------------------------------


def test_builtins_registered_with_default_weights():
    assert {"ssr", "mcr", "scr", "vf", "se"} <= set(REGULARIZERS.names())
    weights = {n: REGULARIZERS.get(n).default_weight for n in ("ssr", "mcr", "scr", "vf")}
    assert weights == {"ssr": 0.2, "mcr": 0.5, "scr": 1.0, "vf": 0.1}
    assert build_regularizer("mcr", mode="medium").mode == "medium"
    assert REGULARIZERS.get("ssr").needs == {"target"} and REGULARIZERS.get("mcr").needs == set()
    with pytest.raises(RegistryError, match="unknown regularizer 'nope'; registered: .*ssr"):
        build_regularizer("nope")


def test_registration_checks_type_and_weight():
    with pytest.raises(RegistryError, match="subclass of Regularizer"):
        register_regularizer("not_a_reg", nn.Identity)
    with pytest.raises(RegistryError, match="default_weight must be a number"):

        @register_regularizer("bad_weight")
        class Bad(Regularizer):
            default_weight = "high"

    with pytest.raises(RegistryError, match="already registered"):
        register_regularizer("ssr", type("Other", (Regularizer,), {}))


def test_missing_context_field_error_names_regularizer():
    z = sphere(2, 4, 4, 4)
    with pytest.raises(ValueError, match="'ssr' needs ctx.target"):
        build_regularizer("ssr")(ctx_for(z))
    with pytest.raises(ValueError, match="resample the prior to the latent grid"):
        build_regularizer("scr")(ctx_for(z, target=torch.randn(2, 4, 2, 2)))


# --- SSR --------------------------------------------------------------------------------------


def test_ssr_zero_for_equal_gram_positive_otherwise():
    torch.manual_seed(0)
    ssr = build_regularizer("ssr")
    target = torch.randn(3, 8, 4, 4)
    assert float(ssr(ctx_for(target.clone(), target=target))) == pytest.approx(0, abs=1e-10)
    q, _ = torch.linalg.qr(torch.randn(8, 8))  # orthogonal channel mix keeps every inner product
    rotated = torch.einsum("dc,bchw->bdhw", q, target)
    assert float(ssr(ctx_for(rotated, target=target))) == pytest.approx(0, abs=1e-10)
    assert float(ssr(ctx_for(2.5 * target, target=target))) == pytest.approx(0, abs=1e-10)  # scale-free
    other = ssr(ctx_for(torch.randn(3, 8, 4, 4), target=target))
    assert 0.05 < float(other) <= 4


def test_ssr_known_answer_and_target_gets_no_grad():
    # two tokens; latent tokens orthogonal (G off-diagonal 0), target tokens equal (off-diagonal 1):
    # ||G_z - G_T||^2 = 2 entries of 1 -> / N^2 = 2 / 4
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).T.reshape(1, 2, 1, 2).requires_grad_()
    target = torch.ones(1, 2, 1, 2, requires_grad=True)
    loss = build_regularizer("ssr")(ctx_for(z, decode=lambda v: v, target=target))
    assert float(loss.detach()) == pytest.approx(0.5)
    loss.backward()
    assert target.grad is None and z.grad is not None


# --- SCR --------------------------------------------------------------------------------------


def test_scr_zero_when_aligned_two_when_opposite():
    torch.manual_seed(0)
    target = torch.randn(2, 8, 4, 4)
    scr = build_regularizer("scr")
    assert float(scr(ctx_for(target.clone(), target=target))) == pytest.approx(0, abs=1e-6)
    assert float(scr(ctx_for(-target, target=target))) == pytest.approx(4, abs=1e-5)  # 2 per term
    assert float(build_regularizer("scr", pooled=False)(ctx_for(-target, target=target))) == pytest.approx(2, abs=1e-5)
    assert float(build_regularizer("scr", patch=False)(ctx_for(-target, target=target))) == pytest.approx(2, abs=1e-5)
    with pytest.raises(ValueError, match="no term left"):
        build_regularizer("scr", pooled=False, patch=False)
    with pytest.raises(ValueError, match="latent_dim equal to"):
        scr(ctx_for(torch.randn(2, 4, 4, 4), target=target))


# --- MCR --------------------------------------------------------------------------------------


def test_rotation_keeps_the_sphere_and_the_angle():
    torch.manual_seed(0)
    z = sphere(2, 16, 4, 4)
    mcr = build_regularizer("mcr")
    direction = torch.randn_like(z)
    z_m, z_l = mcr.perturb(z, direction)
    for zz, deg in ((z_m, 42.5), (z_l, 85.0)):
        torch.testing.assert_close(zz.pow(2).mean(dim=1), torch.ones(2, 4, 4), rtol=1e-5, atol=1e-5)
        cos = torch.nn.functional.cosine_similarity(z, zz, dim=1)
        torch.testing.assert_close(torch.rad2deg(torch.acos(cos.clamp(-1, 1))), torch.full_like(cos, deg), rtol=0, atol=0.05)
    cos_ml = torch.nn.functional.cosine_similarity(z_m, z_l, dim=1)  # same geodesic
    torch.testing.assert_close(torch.rad2deg(torch.acos(cos_ml.clamp(-1, 1))), torch.full_like(cos_ml, 42.5), rtol=0, atol=0.05)
    # known answer: rotating e1 toward e2 by 90 degrees gives e2 (norm kept)
    e1 = torch.tensor([2.0, 0.0]).view(1, 2, 1, 1)
    torch.testing.assert_close(rotate_toward(e1, torch.tensor([1.0, 1.0]).view(1, 2, 1, 1), 90).flatten(), torch.tensor([0.0, 2.0]))


def test_relative_mcr_angles_follow_the_latents_nearest_neighbour_angle():
    """Known geometry: latents at 0, 30 and 100 degrees in one plane -> nearest-neighbour angles
    30, 30, 70 (median 30), so fractions 0.25 / 0.5 give 7.5 / 15 degree steps."""
    from analysis.continuity import nn_angles

    rad = torch.deg2rad(torch.tensor([0.0, 30.0, 100.0]))
    z = torch.zeros(3, 2, 1, 1)
    z[:, 0, 0, 0], z[:, 1, 0, 0] = rad.cos(), rad.sin()
    torch.testing.assert_close(nn_angles(z), torch.tensor([30.0, 30.0, 70.0]), rtol=0, atol=1e-3)
    mcr = build_regularizer("mcr", relative=True, medium_frac=0.25, large_frac=0.5)
    assert mcr.angles(z) == pytest.approx((7.5, 15.0), abs=1e-3) and mcr.last_angles == pytest.approx((7.5, 15.0), abs=1e-3)
    torch.manual_seed(0)
    big = sphere(4, 16, 4, 4)
    z_m, _ = mcr.perturb(big)
    medium = mcr.last_angles[0]
    cos = torch.nn.functional.cosine_similarity(big.flatten(1), z_m.flatten(1), dim=1)
    torch.testing.assert_close(torch.rad2deg(torch.acos(cos)), torch.full((4,), medium), rtol=0, atol=0.05)
    assert build_regularizer("mcr").angles(big) == (42.5, 85.0)  # the paper's setting stays the default
    with pytest.raises(ValueError, match="medium_frac <= large_frac"):
        build_regularizer("mcr", relative=True, medium_frac=0.6, large_frac=0.5)


class Recorder:
    """A linear 'decoder' that keeps every output so the test can inspect its gradient."""

    def __init__(self):
        torch.manual_seed(1)
        self.net = nn.Conv2d(16, 3, 1)
        self.outputs: list[torch.Tensor] = []

    def __call__(self, z):
        out = torch.nn.functional.interpolate(self.net(z), scale_factor=4.0)
        out.retain_grad()
        self.outputs.append(out)
        return out


@pytest.mark.parametrize("perceptual", ["l2", None])
def test_mcr_gradients_skip_stopgrad_targets(perceptual):
    torch.manual_seed(0)
    dec = Recorder()
    z = sphere(2, 16, 4, 4).requires_grad_()
    pd = build_perceptual(perceptual) if perceptual else None
    ctx = RegContext(x=torch.rand(2, 3, 16, 16), z=z, x_rec=dec(z), decode=dec, perceptual=pd)
    loss = build_regularizer("mcr")(ctx)
    loss.backward()
    x_rec, x_m, x_l = dec.outputs
    got = x_m.grad.clone()  # autograd.grad below would accumulate into the retained .grad
    assert x_rec.grad is None  # sg D(z): no gradient through the target path
    assert z.grad.abs().sum() > 0 and dec.net.weight.grad.abs().sum() > 0  # still trains encoder + decoder
    # D(z_m) is the medium term's output AND the large term's target: its gradient must be the
    # medium term's alone.
    expected = torch.autograd.grad(reconstruction_loss(x_rec.detach(), x_m, pd)[0], x_m, retain_graph=True)[0]
    torch.testing.assert_close(got, expected)
    assert x_l.grad.abs().sum() > 0


def test_mcr_modes_value():
    torch.manual_seed(0)
    z = sphere(2, 16, 4, 4)
    direction = torch.randn_like(z)
    dec = lambda v: torch.nn.functional.interpolate(v[:, :3], scale_factor=4.0)  # noqa: E731
    terms = {}
    for mode, cascade in (("cascade", True), ("cascade", False), ("medium", True), ("large", True)):
        mcr = build_regularizer("mcr", mode=mode, cascade=cascade)
        mcr.perturb = lambda zz, d=None, m=mcr: type(m).perturb(m, zz, direction)  # fixed direction
        terms[mode, cascade] = float(mcr(ctx_for(z, decode=dec)))
    z_m, z_l = rotate_toward(z, direction, 42.5), rotate_toward(z, direction, 85)
    l1 = lambda a, b: float((dec(a) - dec(b)).abs().mean())  # noqa: E731  (no perceptual in ctx)
    assert terms["medium", True] == pytest.approx(l1(z_m, z))
    assert terms["large", True] == pytest.approx(l1(z_l, z))
    assert terms["cascade", True] == pytest.approx(l1(z_m, z) + l1(z_l, z_m))
    assert terms["cascade", False] == pytest.approx(l1(z_m, z) + l1(z_l, z))
    with pytest.raises(ValueError, match="mode must be one of"):
        build_regularizer("mcr", mode="huge")


def pinned_mcr():
    """(MCR with one fixed perturbation direction, z, that direction, a smooth decoder)."""
    torch.manual_seed(0)
    z = sphere(2, 16, 4, 4)
    direction = torch.randn_like(z)
    mcr = build_regularizer("mcr")
    mcr.perturb = lambda zz, d=None: MCRType.perturb(mcr, zz, direction)
    return mcr, z, direction, lambda v: torch.sigmoid(torch.nn.functional.interpolate(v[:, :3], scale_factor=4.0))


def test_mcr_cascade_with_feature_reuse_matches_the_formula(effnet):
    mcr, z, direction, dec = pinned_mcr()
    got = mcr(ctx_for(z, decode=dec, perceptual=effnet))
    x, x_m, x_l = dec(z), dec(rotate_toward(z, direction, 42.5)), dec(rotate_toward(z, direction, 85))
    expected = reconstruction_loss(x, x_m, effnet)[0] + reconstruction_loss(x_m, x_l, effnet)[0]
    assert float(got) == pytest.approx(float(expected), rel=1e-5)
    assert float(reconstruction_loss(x, x_m, effnet)[1]["perceptual"]) > 0  # the perceptual part is really in there


def test_mcr_compares_with_the_reconstruction_losss_features_instead_of_embedding_d_z_again(effnet):
    mcr, z, _, dec = pinned_mcr()
    ctx = ctx_for(z, decode=dec, perceptual=effnet)
    alone = mcr(ctx)
    _, _, features = reconstruction_terms(ctx.x, ctx.x_rec, effnet)
    embedded = []
    effnet.embed = lambda x: embedded.append(x) or type(effnet).embed(effnet, x)
    try:
        reused = mcr(replace(ctx, x_rec_features=features))
    finally:
        del effnet.embed
    assert torch.equal(reused, alone)
    assert len(embedded) == 2  # D(z_m) and D(z_l); D(z)'s features came with the reconstruction loss


def test_a_distance_that_overrides_forward_is_called_whole_and_its_features_never_reused(effnet):
    class Scaled(type(effnet)):
        def forward(self, a01, b01):
            return 2 * super().forward(a01, b01)

    scaled = Scaled()
    x, x_rec = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    total, _, features = reconstruction_terms(x, x_rec, scaled, l1_weight=0.0)
    assert features is None and not scaled.embeds_separately and effnet.embeds_separately
    assert float(total) == pytest.approx(2 * float(reconstruction_loss(x, x_rec, effnet, l1_weight=0.0)[0]), rel=1e-6)


def test_the_tokenizer_objective_trains_the_same_with_the_reused_features(monkeypatch):
    """Two MCR steps through TokenizerObjective, with D(z)'s features passed on and without: equal parameters."""
    import pae_lab.stages.tokenizer as tokenizer_stage
    from pae_lab.config.schema import TrainingConfig
    from pae_lab.config.tokenizers import TokenizerConfig
    from pae_lab.architectures import build_tokenizer
    from pae_lab.variants import Variant

    calls = {True: 0, False: 0}

    def trained(reuse: bool) -> list[torch.Tensor]:
        terms = tokenizer_stage.reconstruction_terms if reuse else (lambda *a, **k: (*reconstruction_terms(*a, **k)[:2], None))
        monkeypatch.setattr(tokenizer_stage, "reconstruction_terms", terms)
        torch.manual_seed(0)
        model = build_tokenizer(TokenizerConfig(base_channels=8, channel_mult=[1, 2], latent_channels=4, norm_groups=4))
        variant = Variant(name="mcr", regularizers={"mcr": {"weight": 1.0}})
        regs = variant.build(latent_channels=4, vfm_dim=None)
        objective = tokenizer_stage.TokenizerObjective(model, regs, variant.weights, TrainingConfig())
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        perceptual = build_perceptual("effnet_lite0")
        embed = perceptual.embed
        perceptual.embed = lambda x: calls.__setitem__(reuse, calls[reuse] + 1) or embed(x)
        for step in range(2):
            torch.manual_seed(step)
            total = objective(torch.rand(4, 3, 16, 16), {}, None, perceptual, step, 1.0)[0]
            opt.zero_grad()
            total.backward()
            opt.step()
        return [p.detach().clone() for p in model.parameters()]

    reused, embedded_again = trained(True), trained(False)
    assert all(torch.equal(a, b) for a, b in zip(reused, embedded_again))
    assert calls[False] - calls[True] == 2  # one embedding of D(z) fewer per step


# --- VF ---------------------------------------------------------------------------------------


def test_vf_zero_when_aligned_and_positive_otherwise():
    torch.manual_seed(0)
    z = sphere(2, 8, 4, 4)
    vf = build_regularizer("vf", latent_channels=8, vfm_dim=8)
    with torch.no_grad():
        vf.proj.weight.copy_(torch.eye(8).view(8, 8, 1, 1))
    assert float(vf(ctx_for(z, vfm=z.clone())).detach()) == pytest.approx(0, abs=1e-6)
    # small misalignment stays within the margins
    assert float(vf(ctx_for(z, vfm=z + 0.05 * torch.randn_like(z))).detach()) == pytest.approx(0, abs=1e-6)
    assert float(vf(ctx_for(z, vfm=-z)).detach()) > 1  # opposite: per-token term 1 - 0.5 + 1 = 1.5
    assert sum(p.numel() for p in vf.parameters()) == 64  # trainable, bias-free


def test_vf_requires_setup():
    vf = build_regularizer("vf")
    z = sphere(1, 4, 2, 2)
    with pytest.raises(RuntimeError, match="call setup"):
        vf(ctx_for(z, vfm=torch.randn(1, 6, 2, 2)))
    with pytest.raises(ValueError, match="vfm_dim"):
        vf.setup(latent_channels=4)


# --- SE ---------------------------------------------------------------------------------------


def test_se_scale_equivariance():
    z = sphere(2, 16, 4, 4)
    dec = lambda v: torch.nn.functional.interpolate(v[:, :3], scale_factor=4.0)  # noqa: E731
    ctx = ctx_for(z, decode=dec)
    expected = float((dec(rms_normalize(torch.nn.functional.avg_pool2d(z, 2))) - torch.nn.functional.avg_pool2d(ctx.x, 2)).abs().mean())
    assert float(build_regularizer("se")(ctx)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="does not divide"):
        build_regularizer("se", factor=3)(ctx)


# --- perceptual + reconstruction ---------------------------------------------------------------


def test_perceptual_registry():
    assert {"effnet_lite0", "lpips", "l2"} <= set(PERCEPTUAL.names())
    d = build_perceptual("l2")
    a, b = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)
    torch.testing.assert_close(d(a, b), torch.tensor([0.25, 0.25]))
    assert d.metric_name == "pd_l2"


def test_effnet_distance(effnet):
    torch.manual_seed(0)
    a = torch.rand(2, 3, 32, 32)
    assert effnet.name == "effnet_lite0" and effnet.metric_name == "pd_effnet_lite0"
    torch.testing.assert_close(effnet(a, a), torch.zeros(2), atol=1e-6, rtol=0)
    far = effnet(a, torch.rand(2, 3, 32, 32))
    near = effnet(a, (a + 0.02 * torch.randn_like(a)).clamp(0, 1))
    assert far.shape == (2,) and (far > near).all() and (near > 0).all()
    assert float(far.max()) <= 4 * 3  # each block is bounded by 4 / C
    # differentiable w.r.t. the inputs, frozen backbone
    b = torch.rand(2, 3, 32, 32, requires_grad=True)
    effnet(b, a).sum().backward()
    assert b.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in effnet.parameters())
    # the two code paths (target with / without grad) agree
    c = a.clone().requires_grad_()
    torch.testing.assert_close(effnet(b, c), effnet(b, a))
    effnet.train()
    assert not effnet.backbone.training  # frozen BatchNorm statistics


def test_lpips_error_says_how_to_enable():
    with pytest.raises(PerceptualUnavailable, match=r"pip install lpips.*weights=|local .* weights file"):
        build_perceptual("lpips")
    with pytest.raises(PerceptualUnavailable, match="effnet_lite0|Nothing is downloaded"):
        build_perceptual("lpips", weights="/nonexistent/alexnet.pth")


def test_reconstruction_loss_known_answer():
    x = torch.zeros(2, 3, 4, 4)
    x_rec = torch.full_like(x, 0.5)
    total, terms = reconstruction_loss(x, x_rec, build_perceptual("l2"), l1_weight=2.0, perceptual_weight=4.0)
    assert float(terms["l1"]) == pytest.approx(0.5) and float(terms["perceptual"]) == pytest.approx(0.25)
    assert float(total) == pytest.approx(2 * 0.5 + 4 * 0.25)
    total, terms = reconstruction_loss(x, x_rec, None)
    assert float(total) == pytest.approx(0.5) and float(terms["perceptual"]) == 0
    with pytest.raises(ValueError, match="equal shapes"):
        reconstruction_loss(x, x_rec[:, :, :2], None)


def test_pae_step_backprops_with_real_perceptual(effnet):
    """A full pae-variant step on a tiny batch: every term finite, gradients reach the tokenizer."""
    from pae_lab.models.tokenizer import Tokenizer

    torch.manual_seed(0)
    tok = Tokenizer(base_channels=8, latent_channels=8)
    x = torch.rand(2, 3, 16, 16)
    z, x_rec = tok(x)
    ctx = RegContext(x=x, z=z, x_rec=x_rec, decode=tok.decode, target=torch.randn_like(z), perceptual=effnet)
    total = reconstruction_loss(x, x_rec, effnet)[0]
    for name, w in (("ssr", 0.2), ("mcr", 0.5), ("scr", 1.0)):
        value = build_regularizer(name)(ctx)
        assert math.isfinite(value.item()) and value.item() > 0
        total = total + w * value
    total.backward()
    assert all(p.grad is not None for p in tok.parameters())

"""A study plugin that adds one of each extension point, each in the one place the README names:
a metric, a stage, a launcher and a tokenizer architecture. tests/test_plugins.py runs a study
with it and finds each everywhere it should appear, with no other edit."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from analysis.metric import panel_metric
from analysis.result import MetricResult
from pae_lab.architectures import register_architecture
from pae_lab.config.tokenizers import TokenizerConfig
from pae_lab.execution.launchers.base import register_launcher
from pae_lab.execution.launchers.inline import InlineConfig, InlineLauncher
from pae_lab.fsutil import read_json
from pae_lab.plan.graph import Stage, register_stage
from pae_lab.plan.layout import STAGE_DONE


# -- a metric: declared once, with its direction, label and headline flag
@panel_metric("latent_abs", direction="lower", label="mean |z|", headline=True)
def latent_abs(ctx) -> MetricResult:
    return MetricResult(float(ctx.latents.abs().mean()), {"latent": "held-out, all tokens"})


# -- a stage: what it reads, what changes its result, the results columns it adds
def loss_echo_stage(ctx, out) -> dict[str, float]:
    """Reads the tokenizer stage's summary and reports its final loss under another name."""
    summary = read_json(ctx.input("tokenizer") / STAGE_DONE)["summary"]
    return {"echo": float(summary["loss/total"])}


register_stage(Stage("loss_echo", "plugin_everywhere:loss_echo_stage", reads=("tokenizer",), depends=("seed",),
                     columns={"echo": "echoed_loss"}, doc="a plugin stage"))


# -- a launcher: its own settings model, picked by `launcher.name`
class EchoLauncherConfig(InlineConfig):
    name: Literal["echo_inline"] = Field("echo_inline", description="`echo_inline`: inline, saying so first.")
    greeting: str = Field("hello", description="Printed before the jobs run.")


@register_launcher("echo_inline", EchoLauncherConfig)
class EchoLauncher(InlineLauncher):
    def launch(self, jobs, poll):
        print(f"echo_inline: {self.cfg.greeting}", flush=True)
        return super().launch(jobs, poll)


# -- an architecture: its config model picked by `tokenizer.name`
class MirrorConfig(TokenizerConfig):
    name: Literal["mirror_conv"] = Field("mirror_conv", description="`mirror_conv`: the conv autoencoder, by a plugin.")


@register_architecture("mirror_conv", MirrorConfig)
def build_mirror(config: MirrorConfig):
    from pae_lab.models.tokenizer import Tokenizer

    print("mirror_conv: built by the plugin", flush=True)  # the test sees the builder ran, not only the name
    return Tokenizer(TokenizerConfig(**config.model_dump(exclude={"name"})))

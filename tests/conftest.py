from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

# At most two torch threads per test process. Under pytest-xdist (addopts: -n 2) the workers split
# the cores, and the `pae-lab run` processes a test starts inherit the same share through
# OMP_NUM_THREADS (a test that needs a thread count sets it, as the SLURM reference does).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_THREADS = max(1, min(2, (os.cpu_count() or 1) // _WORKERS))
torch.set_num_threads(_THREADS)
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(_THREADS))

# The modules that start studies, clusters and servers, slowest first. pytest-xdist hands out whole
# modules (--dist loadfile) in collection order (--no-loadscope-reorder): long ones first, so both
# workers end together instead of one finishing a long module alone. A module not named here runs
# after these, in the usual order.
SLOW_FIRST = ("test_study_run.py", "test_slurm.py", "test_tracking_outage.py", "test_distributed.py", "test_pae_study.py",
              "test_external_study.py", "test_controls.py", "test_tracking_server.py", "test_browser.py", "test_plugins.py",
              "test_job_death.py", "test_tune.py", "test_fidelity.py", "test_refit.py", "test_teacher.py", "test_teacher_parts.py", "test_report.py",
              "test_suite_scores.py", "test_evaluate.py")

# The smallest study that still passes through every stage: reused by the end-to-end tests.
TINY = {
    "seeds": [0],
    "data": {"name": "scenes", "resolution": 16, "train_size": 96, "val_size": 48},
    "prior": {"params": {"input_resolution": 64}},  # its 4 x 4 map is the latent grid; 4x cheaper than 128 px
    "refine": {"steps": 4, "batch_size": 16},
    "tokenizer": {"base_channels": 8, "channel_mult": [1, 2], "latent_channels": 4, "downsample": 4},
    "training": {"steps": 6, "batch_size": 8, "log_every": 2, "checkpoint_every": 3},
    "generator": {"width": 32, "depth": 1, "heads": 2, "steps": 6, "batch_size": 16, "eval_at": [3]},
    "evaluation": {"extractor": "effnet-lite0-96", "num_samples": 24, "sampler": {"steps": 2}, "controls": {"blur_sigmas": [1.0], "mode_draws": 2}},
    # one LPC scale: the panel's slowest metric runs the perceptual network once per scale; the weighting
    # over several scales is tests/test_metrics_continuity.py's and tests/test_metrics_panel.py's subject
    "metrics": {"lpc_rhos": [0.5]},
}


@pytest.fixture(autouse=True)
def restore_registries():
    """Tests that register plugins (variants, regularizers, stages) leave every registry as they found it."""
    from pae_lab.plan.graph import STAGES
    from pae_lab.config.registries import all_registries

    import plugin_nan  # noqa: F401  (a study plugin several tests name: imported once, part of the baseline)

    registries = [*all_registries().values(), STAGES]
    for registry in registries:  # the built-ins are part of the baseline, not only their declarations
        registry.load_all()
    before = [dict(r._entries) for r in registries]
    yield
    for registry, entries in zip(registries, before):
        registry._entries.clear()
        registry._entries.update(entries)


def pytest_collection_modifyitems(config, items) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))  # stable: each module keeps its order

"""What a run was made from and what it made, in MLflow's own lineage records.

Inputs: the train and held-out splits and the real reference set, as dataset inputs named after the
study's data, each with a digest (the content hash of the shared stage that wrote it: it changes
whenever the files, settings or code that make it change), where it lives and its size. Output: the
tokenizer as a logged model holding the files a generator needs to sample from it, its weights (the
`pae` architecture never saves its frozen VFM) and its latent statistics.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DIGEST_CHARS = 16  # MLflow keeps a dataset's digest in at most 36 characters
CONTEXT_TAG = "mlflow.data.context"  # MLflow's tag for a dataset's role in a run


def _dataset(name: str, folder: Path, digest: str, context: str, profile: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "uri": Path(folder).resolve().as_uri(), "digest": digest[:DIGEST_CHARS], "context": context,
            "profile": profile}


def dataset_inputs(datasets: list[dict[str, Any]]) -> list:
    """MLflow's DatasetInput records of `run_datasets`' plain descriptions (kept as JSON while the store is away)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    return [DatasetInput(Dataset(name=d["name"], digest=d["digest"], source_type="local", source=json.dumps({"uri": d["uri"]}),
                                 profile=json.dumps(d["profile"])), tags=[InputTag(CONTEXT_TAG, d["context"])])
            for d in datasets]


def run_datasets(study, spec) -> list[dict[str, Any]]:
    """The run's dataset inputs, described in plain JSON (dataset_inputs makes MLflow's records): its data
    splits and its real reference set."""
    data, reference = Path(spec.stage_dir("data")), Path(spec.stage_dir("reference"))
    ev, size = study.evaluation, {"resolution": study.data.resolution}
    return [
        _dataset(f"{study.data.name}:train", data, data.name, "train", {"num_images": study.data.train_size, **size}),
        _dataset(f"{study.data.name}:val", data, data.name, "validation", {"num_images": study.data.val_size, **size}),
        _dataset("reference", reference, reference.name, "evaluation",
                 {"images": ev.reference_images or f"first {study.reference_n} train images",
                  "num_images": spec.summary("reference").get("n_reference"), "statistics": ev.reference_stats, **size}),
    ]


def tokenizer_model(study, spec) -> tuple[str, list[Path], dict[str, Any], int]:
    """(name, files, params, step) of the run's tokenizer as a logged model: the files a generator needs."""
    from pae_lab.plan import layout

    from pae_lab.architectures import architecture

    folder, tokenizer = Path(spec.stage_dir("tokenizer")), study.tokenizer
    trained = architecture(tokenizer).trainable
    return (f"tokenizer-{spec.variant}-seed{spec.seed}", [folder / layout.TOKENIZER_MODEL, folder / layout.LATENT_NORM],
            {"architecture": tokenizer.name, "latent_channels": tokenizer.latent_channels,
             "downsample": tokenizer.downsample, "trained": trained}, study.training.steps if trained else 0)


def log_tokenizer(client, run_id: str, name: str, files: list[Path], params: dict[str, Any], step: int) -> str:
    """The tokenizer's files as a logged model, the run's output. Idempotent: a READY model of the run is
    kept (and linked, if a job died before linking it); one a dead job left half-made is replaced."""
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus

    run = client.get_run(run_id)
    found = client.search_logged_models([run.info.experiment_id],
                                        filter_string=f"source_run_id = '{run_id}' AND name = '{name}'")
    ready = [m for m in found if m.status == LoggedModelStatus.READY]
    for model in found:
        if model.status != LoggedModelStatus.READY:
            client.delete_logged_model(model.model_id)
    if ready:
        model_id = ready[0].model_id
    else:
        model_id = client.create_logged_model(run.info.experiment_id, name=name, source_run_id=run_id,
                                              model_type="pae-lab tokenizer",
                                              params={k: str(v) for k, v in params.items()}).model_id
        for path in files:
            client.log_model_artifact(model_id, str(path))
        client.finalize_logged_model(model_id, LoggedModelStatus.READY)
    if model_id not in {o.model_id for o in (run.outputs.model_outputs if run.outputs else [])}:
        client.log_outputs(run_id, [LoggedModelOutput(model_id, step)])
    return model_id

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


def _dataset(name: str, folder: Path, digest: str, context: str, profile: dict[str, Any]):
    from mlflow.entities import Dataset, DatasetInput, InputTag

    source = json.dumps({"uri": Path(folder).resolve().as_uri()})
    return DatasetInput(Dataset(name=name, digest=digest[:DIGEST_CHARS], source_type="local", source=source,
                                profile=json.dumps(profile)), tags=[InputTag(CONTEXT_TAG, context)])


def run_datasets(study, spec) -> list:
    """The run's dataset inputs: its data splits and its real reference set."""
    data, reference = Path(spec.stage_dir("data")), Path(spec.stage_dir("reference"))
    ev, size = study.evaluation, {"resolution": study.data.resolution}
    return [
        _dataset(f"{study.data.name}:train", data, data.name, "train", {"num_images": study.data.train_size, **size}),
        _dataset(f"{study.data.name}:val", data, data.name, "validation", {"num_images": study.data.val_size, **size}),
        _dataset("reference", reference, reference.name, "evaluation",
                 {"images": ev.reference_images or f"first {study.reference_n} train images",
                  "statistics": ev.reference_stats, **size}),
    ]


def log_tokenizer(client, run_id: str, name: str, files: list[Path], params: dict[str, Any], step: int) -> str:
    """The tokenizer's files as a logged model of the run (found again, not duplicated, when a job logs it twice)."""
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus

    experiment = client.get_run(run_id).info.experiment_id
    found = client.search_logged_models([experiment], filter_string=f"source_run_id = '{run_id}' AND name = '{name}'",
                                        max_results=1)
    if found:
        return found[0].model_id
    model = client.create_logged_model(experiment, name=name, source_run_id=run_id, model_type="pae-lab tokenizer",
                                       params={k: str(v) for k, v in params.items()})
    for path in files:
        client.log_model_artifact(model.model_id, str(path))
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step)])
    return model.model_id

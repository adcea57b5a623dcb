"""MLflow's system metrics (CPU, memory, disk, network; GPU memory and utilisation where nvidia-ml-py
finds a GPU) of one run's job, as its system/* curves: what a variant costs, beside what it scores."""
from __future__ import annotations

import contextlib
from typing import Iterator


def wanted(setting: str, device_type: str) -> bool:
    """tracking.system_metrics: on, off, or auto (CUDA jobs only)."""
    return setting == "on" or (setting == "auto" and device_type == "cuda")


@contextlib.contextmanager
def system_metrics(study, device_type: str, logger) -> Iterator[None]:
    """Sample the job's system metrics into the logger's run while the block runs, when its store
    answered at the job's start (the monitor has no outage handling of its own); never fails the job."""
    monitor = None
    if logger.connected and wanted(study.tracking.system_metrics, device_type):
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            monitor = SystemMetricsMonitor(logger.run_id, sampling_interval=study.tracking.system_metrics_interval,
                                           resume_logging=True, tracking_uri=logger.uri)
            monitor.start()
        except Exception:  # tracking must never stop a job (e.g. psutil missing, the store away)
            monitor = None
    try:
        yield
    finally:
        if monitor is not None:
            with contextlib.suppress(Exception):
                monitor.finish()

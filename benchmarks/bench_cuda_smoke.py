"""CUDA check and timings: three variants through every stage on the GPU (bf16 autocast, channels-last).

    OUT=/tmp/cuda python benchmarks/bench_cuda_smoke.py

Runs the stages directly (no MLflow, so it also runs where mlflow is not installed) and prints
seconds, throughput and key metrics per stage, and the peak GPU memory.
"""
import json, os, time
from pathlib import Path
import torch
from rich.console import Console
from pae_lab.config.schema import StudyConfig
from pae_lab.execution.driver import Driver
from pae_lab.tracking.store import RunLogger
from pae_lab.fsutil import write_json
from pae_lab.execution.job import execute_run
from pae_lab.plan.runs import run_stage_names

out = Path(os.environ.get("OUT", "/tmp/out"))
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0))
cfg = {"name": "gpu", "output_dir": str(out / "study"), "device": "cuda", "variants": ["baseline", "pae", "vavae"],
       "data": {"resolution": 32, "train_size": 2048, "val_size": 256},
       "refine": {"steps": 100},
       "tokenizer": {"base_channels": 32, "channel_mult": [1, 2], "latent_channels": 16, "downsample": 4},
       "training": {"steps": 300, "batch_size": 128, "lr": 1e-3, "regularizer_warmup": 100, "log_every": 50, "checkpoint_every": 100},
       "generator": {"steps": 400, "batch_size": 256, "eval_at": [200]},
       "evaluation": {"num_samples": 1024}}
study = StudyConfig.model_validate(cfg)
d = Driver(study, Console())
t0 = time.time()
d.shared_stages(RunLogger(d.layout.root / "shared", None, None))
print(f"shared stages {time.time()-t0:.1f}s")
for spec in d.runs:
    write_json(spec.layout.run_json, spec.to_file())
    t = time.time()
    res = execute_run(spec.layout.run_json)
    print(spec.variant, res, f"{time.time()-t:.1f}s", flush=True)
    for stage in run_stage_names():
        done = spec.stage_dir(stage) / "done.json"
        if done.exists():
            s = json.loads(done.read_text())
            keep = {k: round(v, 4) for k, v in s["summary"].items() if isinstance(v, (int, float)) and any(
                k.startswith(p) for p in ("loss/total", "throughput", "psnr", "ssc", "lpc", "gsq", "fd_", "rfd_", "stats/rec"))
                    and not k.endswith(("_std", "_median", "_p95", "_max"))}
            print(f"  {stage:<11} {s['seconds']:7.1f}s {keep}")
    failed = spec.layout.failed
    if failed.exists():
        print(failed.read_text()[-3000:])
print("peak GPU memory GiB", round(torch.cuda.max_memory_allocated() / 2**30, 2))

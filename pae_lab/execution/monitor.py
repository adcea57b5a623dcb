"""The live view: one progress bar per run, fed by the progress files the jobs write."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pae_lab.plan.progress import read_progress

STATUS_STYLE = {"running": "cyan", "done": "green", "failed": "red"}


class RunMonitor:
    """Call `poll()` as often as you like; it redraws from the runs' progress files."""

    def __init__(self, runs: dict[str, Path], console: Console):
        self.runs = runs
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=console)
        self.tasks = {name: self.progress.add_task(f"{name:<28} waiting", total=1, note="") for name in runs}
        self._announced: set[str] = set()

    def __enter__(self) -> "RunMonitor":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.poll()
        self.progress.stop()

    def poll(self) -> None:
        for name, run_dir in self.runs.items():
            p = read_progress(run_dir)
            if not p:
                continue
            status = p.get("status", "running")
            style = STATUS_STYLE.get(status, "white")
            stage = p.get("stage", "")
            note = f"loss {p['loss']:.4f}" if "loss" in p else p.get("error", "")[:60]
            self.progress.update(self.tasks[name], description=f"[{style}]{name:<28} {stage:<10}",
                                 completed=p.get("step", 0), total=max(p.get("total", 1), 1), note=note)
            if status in ("done", "failed") and name not in self._announced:
                self._announced.add(name)
                self.progress.console.log(f"[{style}]{name}: {status}[/] {p.get('error', '')}")

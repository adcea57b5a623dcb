"""`pae-lab sync`: replay the JSON-lines metric mirrors into the tracking store.

A job on a node that cannot reach the tracking server keeps training and writes every metric to
its run folder's mirror (see tracking.RunLogger). Sync makes the store hold what the folders hold:
it finds or creates the runs of every run folder (a study's variants, a search's trials; by their
`pae.key` tag, as `pae-lab run` does), logs only the points the store lacks, sends the calls jobs
held back (files, tags, params, lineage: layout.HELD_CALLS), and sets each run's status from its folder. A second sync adds nothing. The driver runs it at the end of `pae-lab run`
and `tune` where the store lacks points (tracking.outage); the mirror's reading and the replay of
one folder are tracking.mirror's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Collection

from rich.console import Console

from pae_lab.config.schema import StudyConfig
from pae_lab.tracking.mirror import replay
from pae_lab.tracking.resume import mark_caught_up
from pae_lab.tracking.held import send_held


@dataclass
class SyncOutcome:
    runs: int
    added: int
    present: int
    held: int = 0  # calls jobs held back (files, tags, params, lineage), sent here
    dropped: int = 0  # held calls the store refuses for good
    left: int = 0  # held calls still kept (one failed for another reason; a later sync tries again)


def sync_study(study: StudyConfig, console: Console | None = None, only: Collection[Path] | None = None) -> SyncOutcome:
    """`only`: these logger folders alone (the driver's reconcile: those the store lags behind); of
    their runs only the ones created here are settled, the driver settles the others itself."""
    from pae_lab.plan.layout import StudyLayout
    from pae_lab.plan.runs import RunSpec, expand
    from pae_lab.tracking.study_runs import StudyRuns

    console = console or Console()
    layout = StudyLayout(study.study_dir())
    mlflow = StudyRuns(study, expand(study))
    specs = [RunSpec.load(r.run_json) for r in layout.runs_on_disk() if only is None or r.root in only]
    fresh = [s for s in specs if not s.mlflow_run_id]
    tracker = mlflow.tracker()
    parent = mlflow.ensure_parent(tracker, status="FINISHED")
    if specs:
        mlflow.register(tracker, parent, specs)
    folders = {parent: layout.shared_root, **{s.mlflow_run_id: s.run_dir for s in specs}}
    if only is not None:
        folders = {run_id: folder for run_id, folder in folders.items() if folder in only}
    added = present = calls = dropped = left = 0
    for run_id, folder in folders.items():
        new, old = replay(tracker.client, run_id, folder)
        mark_caught_up(folder)  # what a job recorded it could not send is in the store now
        held = send_held(tracker.client, run_id, folder)
        added, present = added + new, present + old
        calls, dropped, left = calls + held.sent, dropped + held.dropped, left + held.left
        if new or held.sent or held.dropped or held.left:
            console.log(f"{folder.relative_to(layout.root)}: {new} point(s) added ({old} already there)"
                        + (f", {held.sent} held call(s) sent (files, tags, lineage)" if held.sent else "")
                        + (f", [yellow]{held.dropped} held call(s) the store refuses for good dropped[/]" if held.dropped else "")
                        + (f", [yellow]{held.left} held call(s) still kept: the first failed (see the warning)[/]" if held.left else ""))
    mlflow.settle(tracker, specs if only is None else fresh)
    return SyncOutcome(len(folders), added, present, calls, dropped, left)

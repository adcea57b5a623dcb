"""The driver's side of a tracking outage: carry on through it, then make the store whole.

While `pae-lab run` or `tune` runs, a tracking step (creating a run, settling statuses, logging the
study's tables) that fails while the server does not answer is skipped with one line instead of
ending the study: the jobs train on and keep every point in their mirrors. At the end the driver
reconciles: it counts what each folder's mirror holds and the store lacks (tracking.lag) and,
where the store answers, sends it with `pae-lab sync`'s code, for those folders alone (creating
the runs that could not be created and settling those). Where it still does not answer, one line says how many runs and
points the store lacks and that `pae-lab sync` will add them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from rich.console import Console

from pae_lab.config.schema import StudyConfig
from pae_lab.fsutil import read_json
from pae_lab.plan.layout import StudyLayout
from pae_lab.tracking.lag import RECONCILE_TIMEOUT_S, Lag, store_lag
from pae_lab.tracking.store import PROBE_TIMEOUT_S, answers, is_server, tracking_uri

SHOWN_RUNS = 8  # runs a lag line names before "and N more"


class TrackingGuard:
    """Calls the driver's tracking steps; one that fails while the server does not answer returns
    None (and says so once) instead of raising. Any other failure, and every failure of a store
    that is no server, is raised as before. While down, each step first asks /health (cheap)."""

    def __init__(self, uri: str, console: Console):
        self.uri, self.console = uri, console
        self.down = False
        self.skipped: list[str] = []  # steps the outage cost: a study with any is not marked settled

    def __call__(self, what: str, step: Callable[..., Any], *args: Any) -> Any:
        if self.down and not answers(self.uri, 2.0):
            self.skipped.append(what)
            return None
        try:
            result = step(*args)
        except Exception as exc:
            if not is_server(self.uri) or answers(self.uri, PROBE_TIMEOUT_S):
                raise
            if not self.down:
                self.console.log(f"[yellow]tracking: {self.uri} does not answer ({what}: {type(exc).__name__}); the "
                                 "jobs train on and keep every point in their mirrors; the store gets them when it "
                                 "answers again")
            self.down = True
            self.skipped.append(what)
            return None
        self.down = False
        return result


def study_folders(study: StudyConfig) -> dict[Path, str | None]:
    """Every logger folder of the study -> its MLflow run id: shared/ (the parent run, from
    study.json or tune's) and each run folder on disk (its run.json)."""
    layout = StudyLayout(study.study_dir())
    folders: dict[Path, str | None] = {layout.shared_root: (read_json(layout.study_json) or {}).get("mlflow_parent_run_id")}
    for run in layout.runs_on_disk():
        folders[run.root] = (read_json(run.run_json) or {}).get("mlflow_run_id")
    return folders


def reconcile(study: StudyConfig, parent: str | None, console: Console,
              timeout_s: float = RECONCILE_TIMEOUT_S) -> Lag:
    """Send the store what the mirrors hold and it lacks, if it answers; the lag that is left."""
    from pae_lab.tracking.sync import sync_study

    uri = tracking_uri(study.tracking.uri, study.study_dir())
    shared = StudyLayout(study.study_dir()).shared_root
    lag = store_lag(uri, {**study_folders(study), shared: parent}, timeout_s)
    if not lag.asked or not (lag.total or lag.held_total):
        return lag
    console.log(f"tracking: the store lacks {lag.total} point(s) and {lag.held_total} held call(s) of "
                f"{len(lag.lagging())} run(s); sending them from the mirrors and run folders (as `pae-lab sync` does)")
    try:
        sync_study(study, console, only=set(lag.lagging()))
    except Exception as exc:
        if not is_server(uri) or answers(uri, PROBE_TIMEOUT_S):
            raise
        console.log(f"[yellow]tracking: {uri} stopped answering during the reconcile ({type(exc).__name__})")
    return store_lag(uri, {**study_folders(study), shared: parent}, timeout_s)  # run ids the sync just created


def lag_line(lag: Lag, root: Path, study_file: Path | str) -> str:
    """One line: how many runs and points the store lacks, which runs, and that sync adds them."""
    lagging = lag.lagging()
    names = [Path(f).relative_to(root).as_posix().removeprefix("runs/") for f in sorted(lagging)]
    shown = ", ".join(names[:SHOWN_RUNS]) + (f" and {len(names) - SHOWN_RUNS} more" if len(names) > SHOWN_RUNS else "")
    why = lag.why if not lag.asked else "it did not take them"
    lacks = " and ".join([*([f"{lag.total} point(s)"] if lag.total or not lag.held_total else []),
                          *([f"{lag.held_total} held call(s) (files, tags, lineage)"] if lag.held_total else [])])
    return (f"tracking: the store ({lag.uri}) lacks {lacks} of {len(lagging)} run(s) ({shown}): {why}; "
            f"`pae-lab sync {study_file}` will add them")

"""`pae-lab tune`: Optuna asks, the study's own pipeline answers, the driver tells.

The driver owns the loop (Optuna's ask/tell) and is the only writer of the Optuna storage and of
the MLflow runs; jobs are ordinary runs of `pae-lab run` and know nothing of Optuna:

  prepare: tracking store, the study's parent run (tag pae.kind=tune), shared stages
  -> re-run the trials an interrupted driver left RUNNING (see below)
  -> repeat: ask a batch of `search.parallel` trials; each becomes the inline variant `trial-<n>`
     (pae_lab.tuning.apply); register its MLflow child runs (tagged with the trial number and
     values); launch the batch through the study's launcher while a watcher reports intermediate
     values to Optuna and writes stop.json into the runs of a trial the pruner stops; tell each
     trial COMPLETE (objective values), PRUNED, or FAIL (a run failed, a job died, a value broke
     the config or an objective came out NaN)
  -> trials.csv, pareto.csv, importances.csv, best.json, results.csv, correlations.csv, study.json
  -> reconcile: the store gets what the trials' mirrors hold and it lacks (tracking.outage); a
     tracking server down mid-search skips the tracking steps, never the search.

Interrupted drivers: trials left RUNNING are RE-RUN on the next start under their own number and
folder (not marked FAIL): finished stages are skipped by the stage cache and an unfinished
tokenizer or generator resumes from its checkpoint, so nothing finished is retrained. A lock file
(tune.lock) keeps a second driver off the same study folder.

A pruned trial whose runs finished before they saw stop.json is told COMPLETE: its full result
is known. With pruner source "gfid" the values arrive only after generator training, so pruning
there saves the remaining evaluations at best; prune on a tokenizer metric to save training.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import sys
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from rich.console import Console

from pae_lab.results.aggregate import (accepted_target, aggregate, control_verdicts, controls_table, results_table,
                                      target_columns)
from pae_lab.fsutil import atomic_write, read_json, write_json
from pae_lab.plan.graph import stage_hashes
from pae_lab.plan.layout import RunLayout, StudyLayout
from pae_lab.config.loading import StudyError
from pae_lab.plan.runs import RunSpec
from pae_lab.config.schema import StudyConfig
from pae_lab.execution.driver import Driver
from pae_lab.tracking.lag import Lag
from pae_lab.tracking.outage import reconcile
from pae_lab.tracking.store import RunLogger, StudyTracker
from pae_lab.tuning.algorithms import PRUNERS, SAMPLER_FACTORIES, open_storage, storage_location
from pae_lab.tuning.apply import TrialConfigError, check_search, default_values, trial_name, trial_study
from pae_lab.tuning.objectives import (CONSTRAINTS_ATTR, MissingMetric, constraint_violations, intermediate_source,
                                      objective_values, read_intermediate, stored_violations)
from pae_lab.tuning.outputs import SearchSummary, write_search_outputs

DASHBOARD_PORT = 8080


@dataclass
class TrialRun:
    """One Optuna trial and the runs (one per seed) that answer it."""

    trial: Any  # optuna.trial.Trial
    driver: Driver | None  # None when the trial's values make no valid study
    values: dict[str, Any]
    error: str = ""
    pruned: bool = False
    reported: set[int] = field(default_factory=set)

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def runs(self) -> list[RunSpec]:
        return self.driver.runs if self.driver else []

    @property
    def run_dirs(self) -> list[Path]:
        return [Path(r.run_dir) for r in self.runs]


@dataclass
class TuneOutcome:
    states: dict[str, int]
    told: dict[int, str]  # this session's trials -> state
    search: SearchSummary
    lag: Lag | None = None  # what the store still lacks after the reconcile (tracking.outage)


class PruneWatcher:
    """While a batch runs: report new intermediate values to each trial, stop the ones the pruner prunes.

    A thread, so it works the same under every launcher; it is the only code touching Optuna while
    the main thread waits in the launcher, so the storage still has one writer at a time.
    """

    def __init__(self, trials: list[TrialRun], stage: str, key: str, interval_s: float, console: Console):
        self.trials, self.stage, self.key, self.interval_s, self.console = trials, stage, key, interval_s, console
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pae-lab-prune", daemon=True)

    def __enter__(self) -> "PruneWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception as exc:  # a read race must not end the search; the next poll retries
                self.console.log(f"[yellow]pruning check failed: {type(exc).__name__}: {exc}")

    def check(self) -> None:
        for t in self.trials:
            if t.pruned:
                self._request_stop(t)  # again: a fresh launch deletes stale stop files
                continue
            new = {s: v for s, v in read_intermediate(t.run_dirs, self.stage, self.key).items() if s not in t.reported}
            for step, value in new.items():
                t.trial.report(value, step)
                t.reported.add(step)
            if new and t.trial.should_prune():
                t.pruned = True
                self.console.log(f"[yellow]{trial_name(t.number)}: pruned at step {max(new)} "
                                 f"({self.stage} {self.key} = {new[max(new)]:.4g})")
                self._request_stop(t)

    def _request_stop(self, t: TrialRun) -> None:
        for run_dir in t.run_dirs:
            files = RunLayout(run_dir)
            stop = files.stop
            if files.status() != "done" and not stop.exists():  # one line: TrainLoop quotes it in its error
                atomic_write(stop, lambda p: p.write_text(json.dumps({"reason": f"pruned by optuna (trial {t.number})"})))


@contextlib.contextmanager
def driver_lock(root: Path) -> Iterator[None]:
    """One tuning driver per study folder: the lock dies with its process, so a kill leaves none behind."""
    root.mkdir(parents=True, exist_ok=True)
    lock = StudyLayout(root).tune_lock
    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StudyError(f"{root}: another `pae-lab tune` is running on this study ({lock}); "
                             "wait for it to finish or stop it first") from None
        yield


class TuneDriver:
    def __init__(self, study: StudyConfig, console: Console | None = None, source: str | Path = "study"):
        self.search = check_search(study, source)
        self.study = study
        self.console = console or Console()
        self.base = Driver(study, self.console)
        self.track = self.base.track  # tracking steps that survive a server outage
        self.root = self.base.layout.root
        self.storage = storage_location(self.search.storage, self.root)
        self.study_name = self.search.study_name or study.name
        self._shared_done = {tuple(stage_hashes(study).values())}

    # -- Optuna --------------------------------------------------------------------------------
    def open_study(self):
        """Create or load the Optuna study; sampler seed = seed + stored trials, so a resumed
        search does not replay the first session's draws."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(storage=open_storage(self.storage), study_name=self.study_name,
                                    directions=self.search.directions, load_if_exists=True)
        stored = [d.name.lower() for d in study.directions]
        if stored != self.search.directions:
            raise StudyError(f"search.objectives: the stored study {self.study_name!r} ({self.storage}) has directions "
                             f"{stored}, the study file asks {self.search.directions}; set search.study_name to "
                             "start a new search")
        n = len(study.get_trials(deepcopy=False))
        s = self.search.sampler
        constrained = {"constraints_func": stored_violations(len(self.search.constraints))} if self.search.constraints else {}
        try:
            study.sampler = SAMPLER_FACTORIES.get(s.name)(None if s.seed is None else s.seed + n, **s.params, **constrained)
        except TypeError as exc:
            raise StudyError(f"search.sampler: {s.name!r} with params {s.params}"
                             + (" and search.constraints (use tpe or nsga2)" if constrained else "") + f": {exc}") from None
        study.pruner = PRUNERS.get(self.search.pruner.name)(**self.search.pruner.params)
        study.set_user_attr("objectives", self.search.objective_names)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental API; only the dashboard reads it
            study.set_metric_names(self.search.objective_names)
        if self.search.enqueue_defaults and n == 0:
            study.enqueue_trial(default_values(self.study), user_attrs={"enqueued": "base variant values"})
        return study

    def start_trial(self, trial) -> TrialRun:
        """Suggest (or read back) the trial's values and build the study it runs."""
        values = {spec.path: spec.suggest(trial) for spec in self.search.params.values()}
        trial.set_user_attr("variant", trial_name(trial.number))
        try:
            driver = Driver(trial_study(self.study, values, trial.number), self.console)
        except TrialConfigError as exc:
            return TrialRun(trial, None, values, error=str(exc))
        return TrialRun(trial, driver, values)

    def adopt_running(self, study) -> list[TrialRun]:
        """Trials an interrupted driver left RUNNING: re-run them (cached stages are skipped)."""
        import optuna

        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        adopted = []
        for frozen in running:
            t = self.start_trial(optuna.trial.Trial(study, frozen._trial_id))
            t.reported = set(frozen.intermediate_values)
            adopted.append(t)
        if adopted:
            self.console.log(f"re-running {len(adopted)} trial(s) an interrupted driver left RUNNING: "
                             + ", ".join(trial_name(t.number) for t in adopted))
        return adopted

    # -- one batch -----------------------------------------------------------------------------
    def register(self, t: TrialRun, tracker: StudyTracker, parent: str, parent_logger: RunLogger) -> None:
        hashes = tuple(stage_hashes(t.driver.study).values())
        if hashes not in self._shared_done:  # the trial changes data / prior / refine settings
            t.driver.shared_stages(parent_logger)
            self._shared_done.add(hashes)
        t.driver.mlflow.register(tracker, parent, track=self.track)
        self.track(f"tag the runs of {trial_name(t.number)}", self.tag_runs, t, tracker)

    def tag_runs(self, t: TrialRun, tracker: StudyTracker) -> None:
        labels = {spec.path: spec.label for spec in self.search.params.values()}
        params = {f"trial.{labels[p]}": v for p, v in t.values.items()}
        for spec in t.runs:
            if not spec.mlflow_run_id:  # the server was down: the reconcile creates the run
                continue
            for key, value in {"optuna.trial": t.number, "optuna.study": self.study_name, **params}.items():
                tracker.client.set_tag(spec.mlflow_run_id, key, str(value))
            tracker.log_params(spec.mlflow_run_id, params)

    def run_batch(self, study, batch: list[TrialRun], tracker: StudyTracker, parent: str,
                  parent_logger: RunLogger) -> dict[int, str]:
        ready = [t for t in batch if t.driver is not None]
        for t in ready:
            self.register(t, tracker, parent, parent_logger)
        pending = [spec for t in ready for spec in t.driver.pending()]
        outcomes: dict[Path, dict[str, Any]] = {}
        if pending:
            self.console.log(f"launching {len(pending)} run(s) of " + ", ".join(trial_name(t.number) for t in ready))
            with self.watcher(ready):
                outcomes = self.base.launch(pending)
            self.track("settle the runs' statuses", self.base.mlflow.settle, tracker, pending)
        return {t.number: self.tell(study, t, tracker, parent, outcomes) for t in batch}

    def watcher(self, trials: list[TrialRun]):
        if len(self.search.objectives) > 1:  # Optuna keeps no intermediate values for several objectives
            return contextlib.nullcontext()
        stage, key = intermediate_source(self.search.pruner.source, self.study)
        return PruneWatcher(trials, stage, key, self.search.pruner.interval_s, self.console)

    def tell(self, study, t: TrialRun, tracker: StudyTracker, parent: str,
             outcomes: dict[Path, dict[str, Any]] | None = None) -> str:
        """Tell Optuna how the trial ended; `outcomes` are the launcher's, by run.json path."""
        import optuna

        State = optuna.trial.TrialState
        done = bool(t.runs) and all(RunLayout(d).status() == "done" for d in t.run_dirs)
        values: list[float] = []
        if t.driver is not None and not done and not t.pruned:
            t.error = next(f"{d.parent.name}/{d.name}: {self.run_error(d, outcomes or {})}"
                           for d in t.run_dirs if RunLayout(d).status() != "done")
        if done:
            rows = results_table(t.runs)
            try:
                values = objective_values(self.search.objectives, rows, self.study)
                t.trial.set_user_attr(CONSTRAINTS_ATTR, constraint_violations(self.search.constraints, rows, self.study))
            except MissingMetric as exc:
                t.trial.set_user_attr("error", str(exc))
                study.tell(t.trial, state=State.FAIL)
                raise StudyError(f"search.objectives: {exc}") from None
            if not all(v == v and abs(v) != float("inf") for v in values):
                t.error = f"objective value(s) {values} not finite"
        if t.error:
            t.trial.set_user_attr("error", t.error[:2000])
            state = State.FAIL
            study.tell(t.trial, state=state)
        elif done:
            state = State.COMPLETE
            study.tell(t.trial, values if len(values) > 1 else values[0])
        else:
            state = State.PRUNED
            study.tell(t.trial, state=state)
        self.log_trial(t, state.name, values, tracker, parent)
        return state.name

    @staticmethod
    def log_trial_runs(t: TrialRun, state: str, named: dict[str, float], tracker: StudyTracker, parent: str) -> None:
        for spec in t.runs:
            if not spec.mlflow_run_id:
                continue
            tracker.client.set_tag(spec.mlflow_run_id, "optuna.state", state)
            if named:
                tracker.log_metrics(spec.mlflow_run_id, {f"objective/{k}": v for k, v in named.items()})
            if state == "PRUNED":
                tracker.finish(spec.mlflow_run_id, "KILLED")
        if named:
            tracker.log_metrics(parent, {f"trial/{k}": v for k, v in named.items()}, step=t.number)

    @staticmethod
    def run_error(run_dir: Path, outcomes: dict[Path, dict[str, Any]]) -> str:
        """The stage's own error (failed.json), else the launcher's (a job that died before writing one)."""
        files = RunLayout(run_dir)
        failed = read_json(files.failed)
        if failed:
            return failed.get("error", "failed")
        return outcomes.get(files.run_json, {}).get("error", "job died without a result")

    def log_trial(self, t: TrialRun, state: str, values: list[float], tracker: StudyTracker, parent: str) -> None:
        named = dict(zip(self.search.objective_names, values))
        self.track(f"log {trial_name(t.number)}", self.log_trial_runs, t, state, named, tracker, parent)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in named.items()) or t.error[:200]
        style = {"COMPLETE": "green", "PRUNED": "yellow"}.get(state, "red")
        self.console.log(f"[{style}]{trial_name(t.number)}: {state}[/] {shown}")

    # -- the whole search ----------------------------------------------------------------------
    def run(self) -> TuneOutcome:
        with driver_lock(self.root):
            tracker, parent = self.base.prepare()
            tracker.client.set_tag(parent, "pae.kind", "tune")
            parent_logger = RunLogger(self.base.layout.shared_root, self.base.uri, parent)
            self.base.shared_stages(parent_logger)
            study = self.open_study()
            told: dict[int, str] = {}
            batch = self.adopt_running(study)
            while True:
                if not batch:
                    room = self.search.n_trials - self.started(study)
                    if room <= 0:
                        if not told:
                            self.console.log(f"the search holds {self.started(study)} of {self.search.n_trials} trials: "
                                             "nothing to run (`--trials N` continues it)")
                        break
                    batch = [self.start_trial(study.ask()) for _ in range(min(self.search.parallel, room))]
                told.update(self.run_batch(study, batch, tracker, parent, parent_logger))
                batch = []
            summary = self.finish(study, tracker, parent)
            lag = reconcile(self.study, parent, self.console)
        return TuneOutcome(summary.trials["state"].value_counts().to_dict() if len(summary.trials) else {}, told, summary,
                           lag)

    @staticmethod
    def started(study) -> int:
        """Trials asked so far, in any state; an enqueued one still WAITING is not asked yet."""
        import optuna

        return sum(t.state != optuna.trial.TrialState.WAITING for t in study.get_trials(deepcopy=False))

    def trial_runs(self, study) -> list[RunSpec]:
        """The runs of every stored trial, as their run.json says they ran."""
        specs = []
        for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
            for seed in self.study.seeds:
                run_json = self.base.layout.run(trial_name(t.number), seed).run_json
                if run_json.is_file():
                    specs.append(RunSpec.load(run_json))
        return specs

    def finish(self, study, tracker: StudyTracker, parent: str) -> SearchSummary:
        specs = self.trial_runs(study)
        if specs:
            summary = aggregate(self.study, specs, self.root)
        else:
            gfd, kid = target_columns(self.study)
            summary = {"target": accepted_target(self.study, control_verdicts(self.study, controls_table([])), "no trial has run")[0], "gfd": gfd, "kid": kid, "baseline": ""}
        self.base.runs = specs  # study.json's protocols are read from the trials' runs
        self.base.write_study_json(summary, kind="tune", parent=parent)
        info = read_json(self.base.layout.study_json)
        info.update(objectives=self.search.objective_names, directions=self.search.directions,
                    optuna={"study_name": self.study_name, "storage": self.storage,
                            "dashboard": " ".join(dashboard_command(self.study))})
        write_json(self.base.layout.study_json, info)
        result = write_search_outputs(study, self.search, self.root)
        if result.importance_note:
            self.console.log(result.importance_note)
        self.track("log the search's tables and best trials", self.log_search, result, tracker, parent)
        return result

    def log_search(self, result: SearchSummary, tracker: StudyTracker, parent: str) -> None:
        files = self.base.layout
        for path in (*files.search_tables(), files.results, files.correlations, files.study_json):
            if path.exists():
                tracker.log_artifact(parent, path, "tune")
        for rank, best in enumerate(result.best):
            tracker.log_metrics(parent, {f"best/{k}": v for k, v in best["values"].items()}, step=rank)
        if result.best:
            top = result.best[0]
            tags = {"best.trial": top["number"], "pareto.trials": ",".join(str(b["number"]) for b in result.best),
                    **{f"best.{k}": v for k, v in top["params"].items()}}
            for key, value in tags.items():
                tracker.client.set_tag(parent, key, str(value))
        tracker.finish(parent, "FINISHED")


def dashboard_command(study: StudyConfig, port: int = DASHBOARD_PORT) -> list[str]:
    """`optuna-dashboard <storage> --host 127.0.0.1 --port <port>` over the study's search storage."""
    if study.search is None:
        raise StudyError("search: missing; the dashboard shows a `pae-lab tune` study")
    location = storage_location(study.search.storage, study.study_dir())
    exe = Path(sys.executable).with_name("optuna-dashboard")
    return [str(exe) if exe.exists() else "optuna-dashboard", location, "--host", "127.0.0.1", "--port", str(port)]

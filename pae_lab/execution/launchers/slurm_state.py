"""Job states straight from the SLURM controller (`scontrol show job`), not from accounting.

submitit asks `sacct`; on a cluster without accounting that fails, every job stays UNKNOWN and a
job cancelled before it wrote its result is never done, so a driver waiting on it would wait
forever. The controller itself knows the state of every job for MinJobAge seconds after it ends;
a job it no longer knows, with no result, is lost.
"""
from __future__ import annotations

import subprocess
import time

# States after which a job never runs again (REQUEUED / PENDING / RUNNING / COMPLETING are not).
ENDED = frozenset({"CANCELLED", "COMPLETED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL",
                   "DEADLINE", "PREEMPTED", "SPECIAL_EXIT", "REVOKED"})


def parse_scontrol(text: str) -> dict[str, dict[str, str]]:
    """`scontrol -o show job` lines -> {job id: fields}; array tasks also under '<array id>_<task id>'."""
    jobs: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        fields = dict(tok.split("=", 1) for tok in line.split() if "=" in tok)
        if "JobId" not in fields:
            continue
        jobs[fields["JobId"]] = fields
        if fields.get("ArrayTaskId", "N/A") not in ("N/A", "") and "ArrayJobId" in fields:
            jobs[f"{fields['ArrayJobId']}_{fields['ArrayTaskId']}"] = fields
    return jobs


class SlurmStates:
    """One `scontrol` call per `every_s` for all jobs; `ended(job_id)` gives a reason or None."""

    def __init__(self, every_s: float = 2.0, lost_after_s: float = 600.0):
        self.every_s, self.lost_after_s = every_s, lost_after_s
        self._jobs: dict[str, dict[str, str]] = {}
        self._at = 0.0
        self._ok = False
        self._unknown_since: dict[str, float] = {}

    def refresh(self) -> None:
        if time.monotonic() - self._at < self.every_s:
            return
        self._at = time.monotonic()
        try:
            out = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True, timeout=30)
            self._ok = out.returncode == 0
            if self._ok:
                self._jobs = parse_scontrol(out.stdout)
        except (OSError, subprocess.SubprocessError):
            self._ok = False

    def ended(self, job_id: str) -> str | None:
        """Why the job ended, if it did; a job unknown to the controller for lost_after_s is lost."""
        self.refresh()
        fields = self._jobs.get(job_id)
        if fields is None:
            since = self._unknown_since.setdefault(job_id, time.monotonic())
            if time.monotonic() - since >= self.lost_after_s:
                where = "unknown to the SLURM controller" if self._ok else "no answer from scontrol"
                return f"SLURM job {job_id} lost: {where} for {self.lost_after_s:.0f} s and no result"
            return None
        self._unknown_since.pop(job_id, None)
        state = fields.get("JobState", "UNKNOWN")
        if state not in ENDED:
            return None
        reason = fields.get("Reason", "None")
        detail = f", reason {reason}" if reason not in ("None", "") else ""
        return f"SLURM job {job_id} ended {state} (exit {fields.get('ExitCode', '?')}{detail}) without a result"

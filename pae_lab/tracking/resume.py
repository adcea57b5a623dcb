"""A logger's tracking outages: when to try the store again, and the record of what it cost.

A job whose logging fails keeps training (tracking.store.RunLogger). This module decides when it
may try the store again: after a back-off that doubles up to a ceiling, never more than a bounded
number of attempts nor a bounded number of seconds spent on them, after which the job gives up and
leaves the rest to the driver's reconcile and `pae-lab sync`. Nothing here waits: an attempt is
only *due*, and the logger makes it on its next call.

The record (layout.TRACKING_RECORD in the logger's folder) says what happened and since when the
store lacks points, so the driver and `pae-lab status` can count them from the mirror while the
store does not answer. It outlives the job: a later logger of the same run, the driver's reconcile
or `pae-lab sync` mark it caught up once the store holds everything. Stdlib only.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pae_lab.fsutil import read_json, write_json
from pae_lab.plan.layout import TRACKING_RECORD

UP, DOWN, GAVE_UP = "up", "down", "gave up"


@dataclass(frozen=True)
class Backoff:
    """How a job tries the store again: after first_s, then twice as long each time up to max_s."""

    first_s: float = 2.0
    factor: float = 2.0
    max_s: float = 120.0  # with the defaults, attempts cover an outage of about 1.8 hours
    attempts: int = 60  # then the job gives up; the driver's reconcile sends the rest
    budget_s: float = 120.0  # the most seconds one job spends on attempts (probes and catch-ups)
    probe_s: float = 2.0  # how long one attempt waits for the server's /health

    def delay(self, tries: int) -> float:
        return min(self.max_s, self.first_s * self.factor ** tries)


def record_path(folder: Path) -> Path:
    return Path(folder) / TRACKING_RECORD


def read_record(folder: Path) -> dict[str, Any]:
    return read_json(record_path(folder)) or {}


def unsent_since(folder: Path, run_id: str | None) -> float | None:
    """The time from which the store may lack this folder's points (None: it lacks none we know of)."""
    record = read_record(folder)
    if record.get("state", UP) == UP or record.get("run_id") != run_id:
        return None
    return float(record.get("unsent_since") or 0.0)


def mark_caught_up(folder: Path) -> None:
    """The store holds every point of the folder's mirror now (a replay just made sure)."""
    record = read_record(folder)
    if record and record.get("state") != UP:
        record.update(state=UP, unsent_since=None, caught_up_at=time.time())
        write_json(record_path(folder), record)


class Reconnect:
    """The back-off and the record of one logger; the logger probes and catches up itself."""

    def __init__(self, folder: Path, uri: str, run_id: str, policy: Backoff | None = None):
        self.folder, self.policy = Path(folder), policy or Backoff()
        self.record: dict[str, Any] = {"uri": uri, "run_id": run_id, "state": UP, "outages": 0, "attempts": 0,
                                       "attempt_seconds": 0.0, "replayed": 0, "unsent_since": None, "last_error": ""}
        earlier = read_record(folder)
        if earlier.get("run_id") == run_id and earlier.get("uri") == uri:
            self.record.update(earlier)  # the run's counts go on; what an earlier job left unsent is tried at once
            if self.down:
                self.record["state"] = DOWN
        self._tries = 0  # attempts in this outage: the back-off's exponent
        self._next = 0.0  # monotonic time the next attempt is due
        self._used = 0  # attempts this logger made (the bound is per job)
        self._spent = 0.0

    @property
    def down(self) -> bool:
        return self.record["state"] != UP

    @property
    def gave_up(self) -> bool:
        return self.record["state"] == GAVE_UP

    def lost(self, error: str, since: float) -> bool:
        """A call failed; the store lacks every point from `since` (wall time) on. True on a new outage."""
        new = not self.down
        if new:
            self.record.update(state=DOWN, outages=self.record["outages"] + 1, unsent_since=since)
            self._tries = 0
            self._next = time.monotonic() + self.policy.delay(0)
        self.record["last_error"] = error[:500]
        self.save()
        return new

    def due(self, force: bool = False) -> bool:
        """Whether to try now: down, within the bounds, and (unless forced) past the back-off."""
        if self.record["state"] != DOWN:
            return False
        if self._used >= self.policy.attempts or self._spent >= self.policy.budget_s:
            self.record["state"] = GAVE_UP
            self.save()
            return False
        return force or time.monotonic() >= self._next

    def attempted(self, seconds: float, replayed: int | None, error: str = "") -> None:
        """One attempt took `seconds`; `replayed`: points it sent, None when the store still did not take them."""
        self._used, self._spent = self._used + 1, self._spent + seconds
        r = self.record
        r.update(attempts=r["attempts"] + 1, attempt_seconds=round(r["attempt_seconds"] + seconds, 3))
        if replayed is None:
            self._tries += 1
            self._next = time.monotonic() + self.policy.delay(self._tries)
            r["last_error"] = error[:500] or r["last_error"]
        else:
            r.update(state=UP, replayed=r["replayed"] + replayed, unsent_since=None, recovered_at=time.time())
        self.save()

    def tags(self) -> dict[str, str]:
        """What the outages cost, as tags on the run once the store answers again."""
        r = self.record
        return {"pae.tracking.outages": str(r["outages"]), "pae.tracking.attempts": str(r["attempts"]),
                "pae.tracking.attempt_seconds": f"{r['attempt_seconds']:.2f}", "pae.tracking.replayed": str(r["replayed"])}

    def save(self) -> None:
        write_json(record_path(self.folder), self.record)

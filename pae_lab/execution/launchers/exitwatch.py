"""The command a local submitit job runs through, so the launcher learns how the job ended.

submitit's local controller drops its task's exit status, so a job killed by SIGKILL (or the OOM
killer) would end as "no result" with no reason. This wrapper runs the real job command as its
child, forwards the controller's signals to it, and writes `<job id>_<task>_exit.json` (pid, exit
code, signal) next to submitit's logs before exiting with the child's code. Standard library only
(pae_lab.plan.layout, which names the file, is too).

usage: python -m pae_lab.execution.launchers.exitwatch <job command ...> <submitit folder with %j>
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from pae_lab.plan.layout import job_exit


def exit_file(folder: str, job_id: str, task: str) -> Path:
    return Path(folder.replace("%j", job_id)) / job_exit(job_id, task)


def main(argv: list[str]) -> int:
    child = subprocess.Popen(argv)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, lambda signum, _frame: child.send_signal(signum))
    code = child.wait()
    record = {"pid": child.pid, "returncode": code,
              "signal": signal.Signals(-code).name if code < 0 and -code in signal.Signals._value2member_map_ else None}
    path = exit_file(argv[-1], os.environ.get("SUBMITIT_LOCAL_JOB_ID", "0"), os.environ.get("SUBMITIT_LOCAL_LOCALID", "0"))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

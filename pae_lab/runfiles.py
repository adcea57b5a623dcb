"""Names of the files a job leaves in its run folder, in a leaf module: status, aggregate and tune
read them without importing the job (and through it submitit and every stage)."""
from __future__ import annotations

FAILED_FILE = "failed.json"
RESULT_FILE = "result.json"

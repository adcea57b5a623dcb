"""A new study's SQLite store starts as a copy of an empty store MLflow migrated once: the same schema
as a store MLflow makes itself, its Default experiment inside the study, and never over a store that exists."""
import sqlite3
import subprocess
import sys


def _schema(db) -> tuple:
    """Tables and indexes with their columns and constraints (as sets of lines: MLflow's migrations list a
    table's constraints in another order from one process to the next), and the migration head."""
    with sqlite3.connect(db) as con:
        tables = {name: sorted((sql or "").replace(",", "").split("\n"))
                  for name, sql in con.execute("SELECT name, sql FROM sqlite_master WHERE type IN ('table', 'index')")}
        return tables, con.execute("SELECT version_num FROM alembic_version").fetchall()


def test_a_seeded_store_is_mlflows_own_schema_and_an_existing_store_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    made_by_mlflow = tmp_path / "own.db"
    subprocess.run([sys.executable, "-c", "import mlflow; mlflow.MlflowClient(tracking_uri=" + repr(f"sqlite:///{made_by_mlflow}")
                    + ").search_experiments()"], check=True, capture_output=True, timeout=120)

    from pae_lab.tracking.store import client, empty_store_template

    db = tmp_path / "study" / "mlflow.db"
    c = client(f"sqlite:///{db}")
    assert empty_store_template().parent == tmp_path / "cache" / "pae-lab"
    assert _schema(db) == _schema(made_by_mlflow)
    assert c.get_experiment("0").artifact_location == str(db.parent / "mlartifacts" / "0")
    run = c.create_run(c.create_experiment("x", artifact_location=str(tmp_path / "art")))
    c.log_metric(run.info.run_id, "m", 1.0)

    client(f"sqlite:///{db}")  # a store that exists is never seeded again
    assert client(f"sqlite:///{db}").get_run(run.info.run_id).data.metrics == {"m": 1.0}
    assert sorted(p.name for p in db.parent.iterdir()) == ["mlflow.db"]  # no staged copy left behind

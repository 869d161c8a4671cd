"""deploy/postgres/10-grafana-reader.sh against real PostgreSQL: the role it creates reads
tables that migrations create afterwards, and cannot write."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

HOST = "127.0.0.1"


@pytest.mark.integration
def test_grafana_reader_can_select_later_tables_but_not_write(root: Path) -> None:
    if shutil.which("psql") is None:
        pytest.fail("psql (postgresql-client) is required")
    suffix = uuid.uuid4().hex[:10]
    database, reader = f"adaprune_reader_{suffix}", f"grafana_reader_{suffix}"
    admin = psycopg.connect(f"postgresql://postgres@{HOST}:5432/test", autocommit=True)
    admin.execute(f'CREATE DATABASE "{database}"')
    try:
        env = {
            **os.environ,
            "PGHOST": HOST,
            "POSTGRES_USER": "postgres",
            "POSTGRES_DB": database,
            "GRAFANA_DB_USER": reader,
            "GRAFANA_DB_PASSWORD": "reader-secret",
        }
        script = root / "deploy" / "postgres" / "10-grafana-reader.sh"
        result = subprocess.run(
            ["sh", str(script)], env=env, capture_output=True, text=True, timeout=30, check=False
        )
        assert result.returncode == 0, result.stderr
        owner_url = f"postgresql://postgres@{HOST}:5432/{database}"
        with psycopg.connect(owner_url, autocommit=True) as owner:
            owner.execute("CREATE TABLE jobs (id VARCHAR(36) PRIMARY KEY)")
            owner.execute("INSERT INTO jobs VALUES ('j1')")
        reader_url = f"postgresql://{reader}:reader-secret@{HOST}:5432/{database}"
        with psycopg.connect(reader_url, autocommit=True) as connection:
            assert connection.execute("SELECT id FROM jobs").fetchall() == [("j1",)]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                connection.execute("DELETE FROM jobs")
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.execute(f'DROP ROLE IF EXISTS "{reader}"')
        admin.close()


def test_grafana_reader_script_refuses_to_run_without_a_password(root: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "POSTGRES_USER": "x"}
    script = root / "deploy" / "postgres" / "10-grafana-reader.sh"
    result = subprocess.run(
        ["sh", str(script)], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode != 0
    assert "set GRAFANA_DB_PASSWORD" in result.stderr

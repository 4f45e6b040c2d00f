"""The command line: clear one-line errors and exit codes, never a traceback."""

import subprocess
import sys

from pipelines.cli import main
from tests.conftest import write_source


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def test_validate_a_good_source_exits_0(tiny_estate, capsys):
    assert main(["validate", "--source", str(tiny_estate)]) == 0
    out = capsys.readouterr().out
    assert "usable" in out and "systems" in out and "metrics" in out


def test_validate_a_bad_source_exits_2_with_reasons(tmp_path, capsys):
    root = write_source(tmp_path, incidents=(
        "incident_id,system_id,opened_at,severity\nI1,A,2025-01-02T10:00:00,2\nI2,Q,2025-01-02T10:00:00,2\n"))
    assert main(["validate", "--source", str(root)]) == 2
    out = capsys.readouterr().out
    assert "unknown system_id" in out and "NOT usable" in out


def test_missing_file_is_one_line_and_exit_2(tmp_path):
    write_source(tmp_path, incidents=None)
    result = run("validate", "--source", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"failcast: error: {tmp_path / 'incidents.csv'} is missing: a source needs incidents.csv"]


def test_date_outside_the_calendar_is_one_line_naming_calendar_csv(tiny_estate, tmp_path):
    result = run("ingest", "--source", str(tiny_estate), "--home", str(tmp_path), "--date", "2031-01-06")
    assert result.returncode == 2
    assert "calendar.csv" in result.stderr and "Traceback" not in result.stderr


def test_usage_error_exits_2():
    assert run("risk-of-rain").returncode == 2

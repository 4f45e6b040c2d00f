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


def test_a_bug_is_exit_1_and_a_resource_fault_exit_3_each_in_one_line(monkeypatch, capsys):
    """Only failcast's own errors are usage or data errors; a ValueError from inside a library
    is a bug, not bad input."""
    import pipelines.cli as cli
    from features.errors import ResourceError

    def raiser(exc):
        def command(args):
            raise exc
        return command

    monkeypatch.setattr(cli, "cmd_settings", raiser(ValueError("inside polars")))
    assert main(["settings"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error ValueError: inside polars" in err[0]

    monkeypatch.setattr(cli, "cmd_settings", raiser(ResourceError("MLflow at http://x is unreachable")))
    assert main(["settings"]) == 3
    assert capsys.readouterr().err.strip() == "failcast: error: MLflow at http://x is unreachable"

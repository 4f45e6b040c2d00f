"""Nightly publication end to end in-process, and the reviewer's commands."""

import datetime as dt
import json
import os
import shutil

import polars as pl
import pytest
from markupsafe import escape

from features.ingest import load_source_tables
from features.source import Source
from models.report import render_change_review
from pipelines.cli import main
from pipelines.definitions import build_definitions
from pipelines.runner import RunFailed, run_job
from pipelines.settings import load_settings
from tests.conftest import write_source

# The published estate (module fixture ``published``, about a minute) is built by one worker.
pytestmark = pytest.mark.xdist_group("published")

D1, D2 = dt.date(2025, 8, 27), dt.date(2025, 8, 28)
HOSTILE_SYSTEM = "O'Brien\"1"
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def published(small_estate, tmp_path_factory):
    """The small estate with a hostile system, trained, and published for D1."""
    root = tmp_path_factory.mktemp("publish")
    source = root / "source"
    shutil.copytree(small_estate, source)
    with (source / "systems.csv").open("a") as handle:
        handle.write(f'"{HOSTILE_SYSTEM.replace(chr(34), chr(34) * 2)}",hostile,trading,ops,1,,2020-01-01,,SH-DC1,appliance\n')
        handle.write("OLD-1,retired box,trading,ops,2,,2020-01-01,2025-01-31,SH-DC1,appliance\n")
    with (source / "incidents.csv").open("a") as handle:
        handle.write(f'X1,"{HOSTILE_SYSTEM.replace(chr(34), chr(34) * 2)}",2025-08-20T10:00:00,,2,Software,"{SCRIPT}","{SCRIPT}",fixed\n')
    with (source / "changes.csv").open("a") as handle:
        handle.write(f'CX1,"{HOSTILE_SYSTEM.replace(chr(34), chr(34) * 2)}",2025-08-28T10:00:00,,'
                     f'2025-08-20T10:00:00,release,high,approved,"<img src=x onerror=alert(1)>"\n')
        handle.write("CX2,OLD-1,2025-08-28T11:00:00,,2025-08-20T10:00:00,release,low,approved,"
                     "decommission\nCX3,GHOST-9,2025-08-28T12:00:00,,2025-08-20T10:00:00,config,"
                     "low,approved,new box\n")
    os.environ["DAGSTER_HOME"] = str(root / "dagster")
    settings = load_settings(source, root / "home", env={})
    defs = build_definitions(settings)
    run_job(defs, "features_job", settings, dt.date(2025, 1, 3), D2)
    run_job(defs, "retrain_job", settings,
            run_config={"ops": {"training_set": {"config": {"as_of": D1.isoformat()}}}})
    run_job(defs, "nightly_job", settings, D1, D1)
    yield settings, defs
    os.environ["DAGSTER_HOME"] = ""


def table(settings, as_of):
    with settings.warehouse().reader() as con:
        return con.sql("SELECT * FROM risk_scores WHERE as_of = ? ORDER BY system_id",
                       params=[as_of]).pl()


def test_every_active_system_is_scored_exactly_once(published):
    settings, _ = published
    scores = table(settings, D1)
    with settings.warehouse().reader() as con:
        active = con.execute("SELECT count(*) FROM system_day_features WHERE as_of = ?", [D1]).fetchall()[0][0]
    assert scores.height == active and scores["system_id"].n_unique() == active
    assert HOSTILE_SYSTEM in scores["system_id"].to_list()  # a quote in an id breaks no SQL
    assert scores["risk"].is_between(0, 1).all()
    assert sorted(scores["rank"].to_list()) == list(range(1, active + 1))
    assert set(scores["tier"]) <= {"low", "elevated", "high", "critical"}
    first = scores.row(0, named=True)
    assert first["model_version"] and first["mlflow_run_id"]
    factors = json.loads(first["top_factors"])
    assert factors and {"feature", "value", "contribution", "text", "scope"} <= set(factors[0])


def test_rerun_gives_identical_rows(published):
    settings, defs = published
    before = table(settings, D1).drop("scored_at")
    run_job(defs, "nightly_job", settings, D1, D1)
    assert table(settings, D1).drop("scored_at").equals(before)


def test_report_and_files_are_published_with_inputs_escaped(published):
    settings, _ = published
    folder = settings.published_dir / "2025-08-28"
    html = (folder / "change_review.html").read_text()
    assert "CX1" in html  # every change in the window is on the page
    # ... also on a retired system and on one the inventory does not know (issue 13)
    assert "CX2" in html and "system OLD-1 is out of service since 2025-02-01" in html
    assert "CX3" in html and "system GHOST-9 is not in the inventory" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    rows = html.split("Riskiest systems")[1]
    assert "calendar days" not in rows and "after a long break" not in rows  # said once, above
    similar = [i for cell in table(settings, D1)["similar_incidents"] for i in json.loads(cell)]
    assert similar and all(i["match"].endswith(i["opened_at"][:10]) for i in similar)
    assert any(str(escape(i["match"])) in rows for i in similar)  # each says why, in a few words
    assert "O&#39;Brien&#34;1" in html
    assert pl.read_parquet(folder / "risk_scores.parquet").height == table(settings, D1).height
    assert pl.read_csv(folder / "risk_scores.csv").height == table(settings, D1).height


def test_script_in_an_incident_title_renders_as_text():
    scores = pl.DataFrame({
        "as_of": [D1], "target_date": [D2], "system_id": [HOSTILE_SYSTEM], "risk": [0.5],
        "tier": ["critical"], "rank": [1], "top_factors": ["[]"],
        "similar_incidents": [json.dumps([{"incident_id": "X1", "system_id": HOSTILE_SYSTEM,
                                           "opened_at": "2025-08-20 10:00", "severity": 2,
                                           "category": "Software", "similarity": 0.9,
                                           "title": SCRIPT, "root_cause": SCRIPT,
                                           "remediation": "fixed"}])],
        "scheduled_changes": ["[]"], "model_name": ["m"], "model_version": ["1"],
        "mlflow_run_id": ["r"], "scored_at": [dt.datetime(2025, 8, 27, 10, 31)],
    })
    html = render_change_review(scores, pl.DataFrame({"system_id": [HOSTILE_SYSTEM], "name": ["n"],
                                                      "category": ["c"], "owner": ["o"]}),
                                cutoff="c", target_cutoff="t", timezone="UTC",
                                thresholds=(0.05, 0.15, 0.35))
    assert SCRIPT not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_run_that_fails_mid_publish_leaves_the_previous_day_untouched(published, monkeypatch):
    settings, defs = published
    before = table(settings, D1)
    folder = settings.published_dir / "2025-08-28"
    files = {p.name: p.read_bytes() for p in folder.iterdir()}

    def crash(out_dir, scores, html):
        target = out_dir / str(scores["target_date"][0])
        target.mkdir(parents=True, exist_ok=True)
        (target / ".risk_scores.parquet.partial").write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr("models.publish.publish_files", crash)
    with pytest.raises(RunFailed, match="change_review"):
        run_job(defs, "nightly_job", settings, D2, D2)
    assert table(settings, D1).equals(before)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files


def test_a_blocked_night_does_not_publish(published, tmp_path):
    settings, _ = published
    broken = tmp_path / "broken"
    shutil.copytree(settings.source, broken)
    with (broken / "changes.csv").open("a") as handle:
        for n in range(200):
            handle.write(f"BAD{n},NET-02,the 29th at 8pm,,,,,,\n")
    bad = settings.with_values(source=broken)
    defs = build_definitions(bad)
    before = {day: table(settings, day) for day in (D1, D2)}
    with pytest.raises(RunFailed):
        run_job(defs, "nightly_job", bad, D2, D2)
    for day, rows in before.items():
        assert table(settings, day).equals(rows)
    with settings.warehouse().reader() as con:
        blocked = con.execute("SELECT count(*) FROM quarantine WHERE table_name = 'changes' "
                              "AND reason = 'scheduled_start is not an ISO-8601 timestamp'"
                              ).fetchall()[0][0]
    assert blocked == 200


def test_risk_command_formats(published, capsys):
    settings, _ = published
    args = ["--source", str(settings.source), "--home", str(settings.home)]
    assert main(["risk", *args, "--date", "2025-08-28"]) == 0
    assert ("risk of an incident between the cutoff of 2025-08-27 18:00 and the cutoff of "
            "2025-08-28 18:00 Asia/Shanghai (1 day)") in capsys.readouterr().out
    assert main(["risk", *args, "--date", "2025-08-28", "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert isinstance(records[0]["top_factors"], list)
    assert main(["risk", *args, "--system", HOSTILE_SYSTEM, "--format", "csv"]) == 0
    assert HOSTILE_SYSTEM.split('"')[0] in capsys.readouterr().out
    assert main(["risk", *args, "--date", "2031-01-02"]) == 2


@pytest.fixture
def reviewed(tmp_path):
    """A warehouse with hand-set published risk, one change per decision."""
    source = write_source(
        tmp_path / "src", systems="system_id\nA\nB\nC\nD\n",
        changes=("change_id,system_id,scheduled_start,created_at,risk_level,description\n"
                 "OK,A,2025-06-10T20:00:00,2025-06-01T10:00:00,low,patch\n"
                 "LOOK,B,2025-06-10T20:00:00,2025-06-01T10:00:00,low,patch\n"
                 "STOP,C,2025-06-10T20:00:00,2025-06-01T10:00:00,high,release\n"
                 "BLIND,D,2025-06-10T20:00:00,2025-06-01T10:00:00,low,patch\n"
                 "LATE,A,2025-07-10T20:00:00,2025-06-01T10:00:00,low,unscored\n"))
    settings = load_settings(source, tmp_path / "home", env={})
    from models.scoring import ensure_tables

    warehouse = settings.warehouse()
    with warehouse.lake_writer() as con:
        load_source_tables(con, warehouse.lake, Source.open(source))
    with warehouse.writer() as con:
        ensure_tables(con)
        for system, risk, tier, status, notes in (
                ("A", 0.01, "low", "ok", ""), ("B", 0.2, "high", "ok", ""),
                ("C", 0.5, "critical", "ok", ""),
                ("D", 0.01, "low", "no_telemetry", "no metric samples since 2025-05-30")):
            con.execute("INSERT INTO risk_scores BY NAME SELECT DATE '2025-06-10' AS as_of, "
                        "DATE '2025-06-11' AS target_date, ? AS system_id, ? AS risk, ? AS tier, "
                        "1 AS rank, '[]' AS top_factors, '[]' AS similar_incidents, "
                        "'[]' AS scheduled_changes, 'm' AS model_name, '1' AS model_version, "
                        "'r' AS mlflow_run_id, now() AS scored_at, ? AS data_status, "
                        "? AS data_notes", [system, risk, tier, status, notes])
    return ["--source", str(source), "--home", str(settings.home)]


@pytest.mark.parametrize(("change", "code"), [("OK", 0), ("LOOK", 10), ("STOP", 20), ("BLIND", 10),
                                              ("LATE", 2), ("NOPE", 2)])
def test_review_change_exit_codes(reviewed, change, code, capsys):
    assert main(["review-change", *reviewed, change]) == code
    if code == 2:
        assert "failcast: error:" in capsys.readouterr().err
    if change == "BLIND":  # a low-risk change on a low-risk system, but the system sent no data
        out = capsys.readouterr().out
        assert "EXTRA REVIEW" in out and "no telemetry (no metric samples since 2025-05-30)" in out


# ------------------------------------------------------------------ nights with missing data


@pytest.fixture
def scratch(published, tmp_path):
    """A copy of the published source and warehouse (same MLflow store): a night may break it."""
    settings, _ = published
    source, home = tmp_path / "source", tmp_path / "home"
    shutil.copytree(settings.source, source)
    home.mkdir()
    shutil.copy2(settings.warehouse_path, home / "warehouse.duckdb")
    shutil.copytree(settings.warehouse().lake.root, home / "lake")  # the partition tables
    copy = settings.with_values(source=source, home=home,
                                mlflow_tracking_uri=settings.tracking_uri)
    return copy, build_definitions(copy, today=dt.date(2025, 10, 1))


def silence(source, systems=None, metric=None, as_of=D2):
    """Remove the samples of ``systems`` (all when None), of ``metric`` (all when None), from
    the metric window of ``as_of``."""
    start, end = dt.datetime(2025, 8, 27, 18), dt.datetime(2025, 8, 28, 18)
    assert as_of == D2
    for path in (source / "metrics").rglob("*.parquet"):
        frame = pl.read_parquet(path)
        hit = pl.col("ts").is_between(start, end, closed="left")
        if systems is not None:
            hit &= pl.col("system_id").cast(pl.String).is_in(systems)
        if metric is not None:
            hit &= pl.col("metric").cast(pl.String) == metric
        frame.filter(~hit).write_parquet(path)


def published_rows(settings, as_of):
    with settings.warehouse().reader() as con:
        return con.sql("SELECT * FROM risk_scores WHERE as_of = ?", params=[as_of]).pl()


def test_a_night_past_the_metrics_is_refused_and_published_marked_only_when_allowed(scratch, capsys):
    from pipelines.run_tags import ALLOW_STALE

    settings, defs = scratch
    late = dt.date(2025, 9, 26)  # four weeks after the source's last sample
    with pytest.raises(RunFailed) as refused:
        run_job(defs, "nightly_job", settings, late, late)
    assert refused.value.exit_code == 2
    assert "refused by the check source_feeds_fresh of metrics: metrics end 2025-08-29" in str(refused.value)
    assert "trading days later" in str(refused.value)
    assert published_rows(settings, late).is_empty()
    target = settings.calendar.next_session(late)
    assert not (settings.published_dir / str(target)).exists()

    run_job(defs, "nightly_job", settings, late, late, run_tags={ALLOW_STALE: "true"})
    rows = published_rows(settings, late)
    assert rows.height and (rows["data_status"] != "ok").all()
    assert rows["data_status"].value_counts().sort("count")["data_status"][-1] == "no_telemetry"
    html = (settings.published_dir / str(target) / "change_review.html").read_text()
    assert "published with stale feeds" in html and "metrics end 2025-08-29" in html
    assert "data: no telemetry" in html  # the badge on each system
    args = ["--source", str(settings.source), "--home", str(settings.home)]
    assert main(["risk", *args, "--date", str(target)]) == 0
    out = capsys.readouterr().out
    assert f"data: {rows.height} of {rows.height} systems' data is not ok" in out


def test_half_the_estate_without_telemetry_blocks_the_night(scratch):
    settings, defs = scratch
    before = published_rows(settings, D1)
    systems = pl.read_csv(settings.source / "systems.csv")["system_id"].to_list()
    silence(settings.source, systems[: len(systems) // 2])
    with pytest.raises(RunFailed) as refused:
        run_job(defs, "nightly_job", settings, D2, D2)
    assert refused.value.exit_code == 2
    assert "telemetry_across_estate" in str(refused.value)
    assert "systems that normally send metrics sent none for as-of 2025-08-28" in str(refused.value)
    assert published_rows(settings, D1).equals(before)


def test_three_silent_systems_are_published_marked_and_the_rest_are_not(scratch):
    settings, defs = scratch
    systems = pl.read_csv(settings.source / "systems.csv")["system_id"].to_list()[:3]
    silence(settings.source, systems)
    run_job(defs, "nightly_job", settings, D2, D2)
    rows = published_rows(settings, D2)
    silent = rows.filter(pl.col("data_status") == "no_telemetry")["system_id"].to_list()
    assert sorted(silent) == sorted(systems)
    assert rows.filter(pl.col("data_status") == "ok").height >= rows.height - 6
    notes = rows.filter(pl.col("system_id") == systems[0])["data_notes"][0]
    assert notes.startswith("no metric samples since 2025-08-27; it normally sends")
    html = (settings.published_dir / "2025-08-29" / "change_review.html").read_text()
    assert "Data status:" in html and all(s in html for s in systems)


def test_a_metric_that_vanished_estate_wide_blocks_the_features(scratch):
    settings, defs = scratch
    silence(settings.source, metric="cpu_pct")
    with pytest.raises(RunFailed) as refused:
        run_job(defs, "nightly_job", settings, D2, D2)
    assert refused.value.exit_code == 2
    assert "no_metric_family_gone_empty" in str(refused.value) and "cpu_pct" in str(refused.value)


def test_the_data_banner_and_badges_escape_what_they_show():
    hostile = "<b>x</b>"
    scores = pl.DataFrame({
        "as_of": [D1], "target_date": [D2], "system_id": [HOSTILE_SYSTEM], "risk": [0.5],
        "tier": ["critical"], "rank": [1], "top_factors": ["[]"], "similar_incidents": ["[]"],
        "scheduled_changes": [json.dumps([{"change_id": "C1", "action": "extra review",
                                           "action_reason": "r", "scheduled_start": "s"}])],
        "model_name": ["m"], "model_version": ["1"], "mlflow_run_id": ["r"],
        "scored_at": [dt.datetime(2025, 8, 27, 10, 31)],
        "data_status": ["no_telemetry"], "data_notes": [f"no metric samples of {hostile}"],
    })
    from features.feeds import FeedStatus

    feeds = [FeedStatus("metrics", D1, None, True, f"metrics end {SCRIPT}")]
    html = render_change_review(scores, pl.DataFrame({"system_id": [HOSTILE_SYSTEM], "name": ["n"],
                                                      "category": ["c"], "owner": ["o"]}),
                                cutoff="c", target_cutoff="t", timezone="UTC",
                                thresholds=(0.05, 0.15, 0.35), feeds=feeds)
    assert "Data status: 0 of 1 systems ok; published with stale feeds" in html
    assert html.count("data: no telemetry") == 2  # the system's row and its change's row
    assert hostile not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert SCRIPT not in html and "O&#39;Brien&#34;1" in html

"""The track record on a tiny hand-made estate, against counts worked out by hand.

Three nights are scored (as-of 2025-06-10, -11, -12); the data runs through 2025-06-12, so
the third window has not closed. Labels count severity <= 3. Watch list: the top system.

    night 06-10: A 0.50 #1 (CH1 high-risk, deferred), B 0.20 #2, C 0.01 #3
    night 06-11: B 0.40 #1, A 0.30 #2, C 0.02 #3 (CH2 low-risk, approved)
    night 06-12: C 0.30 #1, A 0.20 #2, B 0.10 #3 (CH3)       window still open

    I1 A 06-11 10:00 P2 Capacity  window of 06-10, A #1    foreseen (after CH1 started)
    I4 D 06-11 11:00 P2 Hardware  window of 06-10          D retired: not scored
    I6 B 06-11 12:00 P4 Software                           above max_severity: not counted
    I2 C 06-11 20:00 P3 Network   window of 06-11, C #3    missed (before CH2 started)
    I3 B 06-12 09:00 P1 Capacity  window of 06-11, B #1    foreseen
    I5 A 06-13 12:00 P2 Capacity  window of 06-12          not known yet
"""

import datetime as dt
import json

import polars as pl
import pytest

from features.build import write_features
from features.ingest import load_source_tables
from features.source import Source
from models import track_record as tr
from models.scoring import PUBLISHED, ensure_tables
from pipelines.cli import main
from pipelines.settings import load_settings
from tests.conftest import write_source

N1, N2, N3 = dt.date(2025, 6, 10), dt.date(2025, 6, 11), dt.date(2025, 6, 12)
TARGET = {N1: N2, N2: N3, N3: dt.date(2025, 6, 13)}
SCORES = {  # night: [(system, risk, tier, changes)]
    N1: [("A", 0.50, "critical", [("CH1", "defer")]), ("B", 0.20, "high", []), ("C", 0.01, "low", [])],
    N2: [("B", 0.40, "critical", []), ("A", 0.30, "high", []), ("C", 0.02, "low", [("CH2", "approve")])],
    N3: [("C", 0.30, "high", []), ("A", 0.20, "high", []), ("B", 0.10, "elevated", [("CH3", "extra review")])],
}
THRESHOLDS = (0.05, 0.15, 0.35)


def published_frame() -> pl.DataFrame:
    rows = []
    for night, systems in SCORES.items():
        for rank, (system, risk, tier, changes) in enumerate(systems, start=1):
            rows.append({"as_of": night, "target_date": TARGET[night], "system_id": system,
                         "risk": risk, "tier": tier, "rank": rank, "top_factors": "[]",
                         "similar_incidents": "[]",
                         "scheduled_changes": json.dumps([{"change_id": c, "action": a} for c, a in changes]),
                         "model_name": "m", "model_version": "7", "mlflow_run_id": "r",
                         "scored_at": dt.datetime(2025, 6, 10, 11)})
    return pl.DataFrame(rows)


@pytest.fixture
def estate(tmp_path):
    source = write_source(
        tmp_path / "src",
        systems="system_id,active_to\nA,\nB,\nC,\nD,2025-06-01\n",
        incidents=("incident_id,system_id,opened_at,severity,category\n"
                   "I1,A,2025-06-11T10:00:00,2,Capacity\nI4,D,2025-06-11T11:00:00,2,Hardware\n"
                   "I6,B,2025-06-11T12:00:00,4,Software\nI2,C,2025-06-11T20:00:00,3,Network\n"
                   "I3,B,2025-06-12T09:00:00,1,Capacity\nI5,A,2025-06-13T12:00:00,2,Capacity\n"),
        changes=("change_id,system_id,scheduled_start,created_at,risk_level,status\n"
                 "CH1,A,2025-06-10T20:00:00,2025-06-01T10:00:00,high,failed\n"
                 "CH2,C,2025-06-11T21:00:00,2025-06-01T10:00:00,low,implemented\n"
                 "CH3,B,2025-06-12T20:00:00,2025-06-01T10:00:00,medium,planned\n"),
        toml="[label]\nmax_severity = 3\n[risk]\nwatch_list_size = 1\n")
    settings = load_settings(source, tmp_path / "home", env={})
    warehouse = settings.warehouse()
    with warehouse.lake_writer() as con:
        load_source_tables(con, warehouse.lake, Source.open(source))
    return settings


def publish(settings) -> None:
    with settings.warehouse().writer() as con:
        ensure_tables(con)
        con.register("hand_scores", published_frame())
        con.execute(f"INSERT INTO {PUBLISHED} BY NAME SELECT * FROM hand_scores")  # noqa: S608
        con.unregister("hand_scores")
    # The warehouse holds data through 06-12: the windows of 06-10 and 06-11 have closed.
    days = pl.DataFrame({"system_id": ["A"], "as_of": [N3], "target_date": [TARGET[N3]]})
    warehouse = settings.warehouse()
    with warehouse.lake_writer() as con:
        write_features(con, warehouse.lake, days, [N3])


def assert_hand_counts(record: tr.TrackRecord) -> None:
    assert (record.nights, record.nights_known) == (3, 2)
    assert (record.headline["rows"], record.headline["failures"]) == (6, 3)
    assert record.watch == {"system_nights": 2, "with_incident": 2, "precision": 1.0,
                            "failing_system_nights": 3, "caught_share": pytest.approx(2 / 3),
                            "base_rate": 0.5, "lift": 2.0}
    assert record.incidents == {"total": 4, "foreseen": 2, "missed": 1, "not scored": 1,
                                "foreseen_share": pytest.approx(2 / 3)}
    by_category = {r["category"]: (r["incidents"], r["foreseen"], r["missed"], r["not_scored"])
                   for r in record.by_category.iter_rows(named=True)}
    assert by_category == {"Capacity": (2, 2, 0, 0), "Network": (1, 0, 1, 0), "Hardware": (1, 0, 0, 1)}
    by_severity = {r["severity"]: (r["incidents"], r["foreseen"], r["missed"], r["not_scored"])
                   for r in record.by_severity.iter_rows(named=True)}
    assert by_severity == {"P1": (1, 1, 0, 0), "P2": (2, 1, 0, 1), "P3": (1, 0, 1, 0)}
    bins = {r["bin"]: (r["system_nights"], r["incidents"]) for r in record.calibration.iter_rows(named=True)}
    assert bins == {"1%-2%": (1, 0), "2%-5%": (1, 1), "15%-25%": (1, 0), "25%-35%": (1, 0),
                    "35%-50%": (1, 1), "50%-100%": (1, 1)}
    changes = {r["action"]: (r["changes"], r["followed_by_incident"], r["failed_or_rolled_back"])
               for r in record.changes.iter_rows(named=True)}
    assert changes == {"approve": (1, 0, 0), "defer": (1, 1, 1)}


def test_published_scores_against_what_happened(estate):
    publish(estate)
    with estate.warehouse().reader() as con:
        scores = tr.published_scores(con)
        record, outcomes = tr.track_record(
            con, estate.calendar, scores, max_severity=3, thresholds=THRESHOLDS, watch_list=1,
            known_through=tr.data_through(con), kind="published", label="hand")
    assert_hand_counts(record)
    with estate.warehouse().writer() as con:
        assert tr.save_outcomes(con, outcomes) == 9
        saved = con.sql(f"SELECT * FROM {tr.OUTCOMES} ORDER BY as_of, rank").pl()  # noqa: S608
    first = saved.row(0, named=True)
    assert (first["system_id"], first["incident"], first["incident_ids"]) == ("A", True, ["I1"])
    assert json.loads(first["changes"])[0] == {"change_id": "CH1", "action": "defer", "risk_level": "high",
                                               "status": "failed", "followed_by_incident": True}
    last_night = saved.filter(pl.col("as_of") == N3)
    assert not last_night["outcome_known"].any() and last_night["incident"].is_null().all()


def test_a_backtest_file_earns_the_same_record_labelled_as_a_backtest(estate, tmp_path, capsys):
    labels = {(N1, "A"): True, (N1, "B"): False, (N1, "C"): False,
              (N2, "B"): True, (N2, "A"): False, (N2, "C"): True}
    rows = [{"system_id": s, "as_of": night, "target_date": TARGET[night], "risk": risk,
             "label": labels.get((night, s))}
            for night, systems in SCORES.items() for s, risk, *_ in systems]
    path = tmp_path / "bt.csv"
    pl.DataFrame(rows).write_csv(path)
    args = ["--source", str(estate.source), "--home", str(estate.home)]
    assert main(["track-record", *args, "--backtest", str(path)]) == 0
    assert "BACKTEST" in capsys.readouterr().out
    html = (tmp_path / "bt_track_record.html").read_text()
    assert "BACKTEST" in html and "not forecasts anyone was shown" in html
    record, _ = tr.backtest_record(path, estate.source, estate.calendar, max_severity=3,
                                   thresholds=THRESHOLDS, watch_list=1)
    assert record.kind == "backtest"
    assert_hand_counts(record)
    summary = pl.read_csv(tmp_path / "bt_track_record.csv")
    foreseen = summary.filter((pl.col("section") == "incidents") & (pl.col("measure") == "foreseen"))
    assert foreseen["value"].to_list() == ["2"]


def test_track_record_command_exit_codes(estate, tmp_path, capsys):
    args = ["--source", str(estate.source), "--home", str(estate.home)]
    assert main(["track-record", *args]) == 2  # nothing published yet
    assert "nothing published yet" in capsys.readouterr().err
    assert main(["track-record", *args, "--backtest", str(tmp_path / "none.parquet")]) == 2
    assert main(["track-record", *args, "--start", "2025-06-12", "--end", "2025-06-10"]) == 2
    publish(estate)
    assert main(["track-record", *args]) == 0
    out = capsys.readouterr().out
    assert "2 foreseen, 1 missed, 1 on systems not scored" in out
    assert (estate.published_dir / "track-record" / "track_record.html").is_file()

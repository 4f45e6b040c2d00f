"""Similar past incidents are found by what drives tonight's risk, and say why they match."""

import datetime as dt

import polars as pl
import pytest

from features.build import write_features
from features.ingest import load_source_tables
from features.source import Source
from models.reasons import say
from models.similar import similar_incidents
from pipelines.settings import load_settings
from tests.conftest import write_source

TONIGHT = dt.date(2025, 6, 20)
INCIDENTS = (
    "incident_id,system_id,opened_at,severity,category,title,root_cause,remediation\n"
    "DISK,C,2025-06-03T10:00:00,3,Capacity,C /data filesystem 100% full; writes failing,"
    "Log rotation disabled; debug logging grew the volume,Purged logs; re-enabled logrotate\n"
    "FEED,C,2025-06-04T10:00:00,3,Vendor,C vendor feed delivered corrupt file,"
    "Vendor-side defect in daily file generation,Requested redelivery\n"
    "LATER,C,2025-06-21T10:00:00,3,Capacity,C disk full again,Same,Same\n"
)


@pytest.fixture
def library(tmp_path):
    source = write_source(tmp_path / "src", systems="system_id,category,depends_on\nA,db,B\nB,db,\nC,web,\n",
                          incidents=INCIDENTS)
    settings = load_settings(source, tmp_path / "home", env={})
    warehouse = settings.warehouse()
    with warehouse.lake_writer() as con:
        load_source_tables(con, warehouse.lake, Source.open(source))
        today = pl.DataFrame({"system_id": ["A", "B", "C"], "as_of": [TONIGHT] * 3,
                              "target_date": [dt.date(2025, 6, 23)] * 3,
                              "disk_pct__days_to_limit": [4.0, 200.0, 300.0]})
        write_features(con, warehouse.lake, today, [TONIGHT])
    return settings, today


def disk_filling(value: float = 4.0) -> dict:
    said = say("disk_pct__days_to_limit", value)
    return {"feature": "disk_pct__days_to_limit", "value": value, "contribution": 0.8,
            "scope": said.scope, "text": said.text, "mechanism": said.mechanism.name}


def test_an_incident_of_the_same_mechanism_ranks_above_a_newer_different_one(library):
    settings, today = library
    factors = [[disk_filling()], [], []]
    with settings.warehouse().reader() as con:
        shown = similar_incidents(con, settings.calendar, TONIGHT, today, factors, k=2)
    first, second = shown[0]
    assert (first["incident_id"], second["incident_id"]) == ("DISK", "FEED")
    assert first["similarity"] > second["similarity"]
    assert first["match"] == "on C, disk filling, 2025-06-03"  # elsewhere in the estate, same mechanism
    assert second["match"] == "on C, 2025-06-04"
    assert first["root_cause"].startswith("Log rotation") and first["remediation"]
    assert "LATER" not in {s["incident_id"] for row in shown for s in row}  # opened after the cutoff


def test_without_a_mechanism_the_newer_incident_of_the_same_place_comes_first(library):
    settings, today = library
    with settings.warehouse().reader() as con:
        shown = similar_incidents(con, settings.calendar, TONIGHT, today, [[], [], []], k=2)
    assert [s["incident_id"] for s in shown[2]] == ["FEED", "DISK"]
    assert shown[2][0]["match"] == "same system, 2025-06-04"

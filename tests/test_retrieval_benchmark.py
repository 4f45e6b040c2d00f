"""The similar-incident benchmark runs on a trained home and counts what it shows."""

import datetime as dt

from benchmarks.retrieval import measure
from tests.lifecycle_home import GROUP

pytestmark = GROUP


def test_the_retrieval_benchmark_counts_each_incident_of_the_nights_once(trained_home):
    settings = trained_home.settings
    hits = measure(settings, dt.date(2025, 8, 18), dt.date(2025, 8, 22), before=None)
    found, total = hits["after"]["all"]
    assert total > 0 and 0 <= found <= total
    assert sum(t for key, (_, t) in hits["after"].items() if key != "all") == total

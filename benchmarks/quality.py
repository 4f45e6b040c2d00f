"""The quality scenario: the deployed policy's backtest on estates the model has never seen.

Estates (generated once under ``$FAILCAST_HOME/bench/quality_<name>``, sized for 2 cores):

- ``faint-precursors``: another seed, half the precursor-driven failures and twice the ones
  without precursors (``features.demo_estate.profiles``), 60 systems, 18 months.
- ``change-heavy``: another seed, a firm that releases and reconfigures three times as often,
  each change more likely to fail or to leak; 80 systems, 18 months.
- ``short-history``: another seed, the demo's mechanisms, 100 systems, five months of history
  in all: the model must learn from little.
- ``site-24-7``: a site that never closes (calendar ``24/7``, Europe/London), run by its
  maintenance calendar, with connection pools that exhaust until restarted; 50 systems, ten
  months.
- ``lanl``: the LANL HPC failure records (real, no telemetry), ``/work/shared/data/lanl`` or
  ``$FAILCAST_LANL``.
"""

from __future__ import annotations

import datetime as dt

D = dt.date

# name -> (generator spec, backtest range)
ESTATES: dict[str, tuple[dict, tuple[dt.date, dt.date]]] = {
    "faint-precursors": (
        {"systems": 60, "start": D(2025, 1, 2), "end": D(2026, 6, 30), "minutes": 60,
         "metrics": 12, "seed": 22, "profile": "faint-precursors"},
        (D(2026, 1, 5), D(2026, 6, 30))),
    "change-heavy": (
        {"systems": 80, "start": D(2025, 1, 2), "end": D(2026, 6, 30), "minutes": 60,
         "metrics": 12, "seed": 21, "profile": "change-heavy"},
        (D(2026, 1, 5), D(2026, 6, 30))),
    "short-history": (
        {"systems": 100, "start": D(2025, 11, 3), "end": D(2026, 3, 31), "minutes": 60,
         "metrics": 12, "seed": 23, "profile": "demo"},
        (D(2026, 2, 2), D(2026, 3, 31))),
    "site-24-7": (
        {"systems": 50, "start": D(2025, 3, 1), "end": D(2025, 12, 31), "minutes": 60,
         "metrics": 12, "seed": 24, "profile": "maintenance-driven", "exchange": "24/7",
         "timezone": "Europe/London"},
        (D(2025, 9, 1), D(2025, 12, 31))),
}
LANL_RANGE = (D(2004, 1, 1), D(2005, 8, 31))

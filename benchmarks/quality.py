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

``python -m benchmarks.quality [--estates NAME ...] [--leave-out FAMILY ...] [--out FILE]
[--label TEXT]`` generates each estate once (``failcast generate``), runs ``failcast backtest`` on
it in a process of its own (the deployed policy: weekly retraining, hold-out, gate, refit,
fallback; with ``--leave-out``, every model it trains without those feature families: an
ablation) and prints one markdown table: PR-AUC, ROC-AUC, Brier and recall at 5% of what served, their ratio to each baseline,
the policy's actions, wall time, peak resident memory and the load average. Results are kept by
label (default: the commit) in ``$FAILCAST_HOME/bench/quality_results.json``, so a "before" and
an "after" run sit side by side; each estate's scores are kept too
(``$FAILCAST_HOME/bench/quality_scores/<label>/<estate>.parquet``), so ``--show A B`` also
compares the two on the same rows: the difference in PR-AUC and Brier with the gate's paired
bootstrap interval (whole days resampled, ``models.gate.compare_scorers``) and its verdict.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

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

LANL_SOURCE = os.environ.get("FAILCAST_LANL", "/work/shared/data/lanl")
HOME = Path(os.environ.get("FAILCAST_HOME", "data")).resolve() / "bench"
BASELINES = ("recent_incident_rate", "operator_rule")  # as the backtest names them
MODEL = "failcast model"


@dataclass
class EstateResult:
    """One estate's deployed-policy backtest, as the table reports it."""

    estate: str
    range: str
    rows: int
    failures: int
    metrics: dict[str, dict[str, float]]  # scorer -> pr_auc, roc_auc, brier, recall_at_5pct
    retrainings: int
    actions: dict[str, int]
    fallback_periods: int
    seconds: float
    peak_mb: int
    load: tuple[float, float]  # 1-minute load average at the start and at the end
    leave_out: tuple[str, ...] = ()  # feature families the backtest's models did without

    def ratio(self, metric: str, baseline: str) -> float:
        return self.metrics[MODEL][metric] / self.metrics[baseline][metric]


def _failcast() -> str:
    return str(Path(sys.executable).with_name("failcast"))


def _run(command: list[str], log: Path) -> tuple[float, int]:
    """Run a command with its output in ``log``: (wall seconds, peak resident MB)."""
    started = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        tail = log.read_text()[-2000:]
        raise SystemExit(f"{' '.join(command[:2])} failed (log {log}):\n{tail}")
    return time.perf_counter() - started, round(usage.ru_maxrss / 1024)


def generated_source(name: str) -> Path:
    """The estate's source directory, generated once and reused while its spec is unchanged."""
    spec, _ = ESTATES[name]
    out = HOME / f"quality_{name}"
    marker = out / ".spec.json"
    wanted = json.dumps(spec, sort_keys=True, default=str)
    if marker.exists() and marker.read_text() == wanted:
        return out
    command = [_failcast(), "generate", "--out", str(out), "--overwrite", "--quiet",
               "--systems", str(spec["systems"]), "--start", str(spec["start"]),
               "--end", str(spec["end"]), "--minutes-per-sample", str(spec["minutes"]),
               "--metrics", str(spec["metrics"]), "--seed", str(spec["seed"]),
               "--profile", spec["profile"]]
    if "exchange" in spec:
        command += ["--exchange", spec["exchange"], "--timezone", spec["timezone"]]
    HOME.mkdir(parents=True, exist_ok=True)
    seconds, peak = _run(command, HOME / f"quality_{name}_generate.log")
    print(f"  generated {out} in {seconds:.0f} s ({peak} MB)", flush=True)
    marker.write_text(wanted)
    return out


def backtest(name: str, leave_out: tuple[str, ...] = (), label: str | None = None) -> EstateResult:
    """The deployed policy's backtest of one estate, in a process of its own, its models
    trained without the feature families ``leave_out``; its scores kept under ``label``."""
    if name == "lanl":
        source, (start, end) = Path(LANL_SOURCE), LANL_RANGE
        if not source.exists():
            raise SystemExit(f"no LANL records at {source} (set FAILCAST_LANL)")
    else:
        source, (start, end) = generated_source(name), ESTATES[name][1]
    folder = HOME / f"quality_{name}_backtest"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    scores = folder / "scores.parquet"
    load_before = os.getloadavg()[0]
    print(f"{name}: backtest {start}..{end} (log {folder / 'backtest.log'})", flush=True)
    seconds, peak = _run([_failcast(), *backtest_arguments(source, start, end, folder, leave_out)],
                         folder / "backtest.log")
    load_after = os.getloadavg()[0]
    shutil.rmtree(folder / "work", ignore_errors=True)  # the warehouse: gigabytes for LANL
    if label is not None:
        keep_scores(scores, label, name)
    return summarise(name, f"{start}..{end}", scores, seconds, peak, (load_before, load_after),
                     leave_out)


def kept_scores(label: str, estate: str) -> Path:
    """Where a run's scores of one estate are kept (the label made a folder name)."""
    return HOME / "quality_scores" / re.sub(r"[^\w.-]+", "_", label).strip("_") / f"{estate}.parquet"


def keep_scores(scores_path: Path, label: str, estate: str) -> Path:
    """The backtest's labelled rows, what served and the keys: what a paired comparison needs."""
    import polars as pl

    kept = kept_scores(label, estate)
    kept.parent.mkdir(parents=True, exist_ok=True)
    (pl.read_parquet(scores_path, columns=["system_id", "as_of", "risk", "label"])
     .filter(pl.col("label").is_not_null()).write_parquet(kept))
    return kept


def paired(estate: str, reference: str, other: str):
    """``other``'s served scores against ``reference``'s on the same (system, day) rows, as the
    gate compares scorers (``models.gate.Comparison``), or None when either run's scores of
    the estate were not kept."""
    import polars as pl

    from models.gate import GateConfig, compare_scorers

    paths = kept_scores(reference, estate), kept_scores(other, estate)
    if not all(path.exists() for path in paths):
        return None
    first, second = (pl.read_parquet(path) for path in paths)
    rows = first.join(second.select("system_id", "as_of", other_risk="risk", other_label="label"),
                      on=["system_id", "as_of"], how="inner")
    if not (rows.height == first.height == second.height
            and (rows["label"] == rows["other_label"]).all()):
        raise SystemExit(f"{estate}: runs {reference!r} and {other!r} did not score the same "
                         "rows with the same outcomes; they cannot be compared pairwise")
    [found] = compare_scorers(rows["as_of"].to_numpy(), rows["label"].to_numpy(),
                              {reference: rows["risk"].to_numpy(),
                               other: rows["other_risk"].to_numpy()},
                              [(other, reference)], GateConfig())
    return found


def estate_tables(runs: dict[str, list[EstateResult]]) -> str:
    """One table per estate, the runs side by side (the first is the reference): PR-AUC, its
    ratio to the recent incident rate, Brier's ratio to it and recall at 5%; below, each later
    run against the first on the same rows: the differences with the gate's paired bootstrap
    intervals, each higher or lower beyond noise (the interval excludes 0) or within it."""
    from models.gate import GateConfig

    labels = list(runs)
    by_label = {label: {r.estate: r for r in results} for label, results in runs.items()}
    estates = list(dict.fromkeys(r.estate for results in runs.values() for r in results))
    shown = (("PR-AUC", lambda r: f"{r.metrics[MODEL]['pr_auc']:.4f}"),
             ("PR-AUC x recent rate", lambda r: f"{r.ratio('pr_auc', BASELINES[0]):.2f}"),
             ("Brier / recent rate", lambda r: f"{r.ratio('brier', BASELINES[0]):.3f}"),
             ("recall at 5%", lambda r: f"{r.metrics[MODEL]['recall_at_5pct']:.3f}"))
    gate = GateConfig()
    out = []
    for estate in estates:
        found = [by_label[label].get(estate) for label in labels]
        rows = next(r for r in found if r)
        out += [f"**{estate}** ({rows.range}, {rows.rows:,} rows, {rows.failures:,} failures)", "",
                "| | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
        out += [f"| {name} | " + " | ".join(show(r) if r else "-" for r in found) + " |"
                for name, show in shown]
        out.append("")
        for label in labels[1:]:
            against = paired(estate, labels[0], label)
            if against is not None:
                out.append(
                    f"- {label} against {labels[0]}, same rows, {gate.confidence:.0%} intervals "
                    f"of {gate.resamples} day resamples: PR-AUC {against.difference:+.4f} "
                    f"({against.low:+.4f}..{against.high:+.4f}: "
                    f"{_verdict(against.low, against.high)}), Brier "
                    f"{against.brier - against.reference_brier:+.5f} ({against.brier_low:+.5f}.."
                    f"{against.brier_high:+.5f}: {_verdict(against.brier_low, against.brier_high)})")
        out.append("")
    return "\n".join(out)


def _verdict(low: float, high: float) -> str:
    return "higher beyond noise" if low > 0 else "lower beyond noise" if high < 0 else "within noise"


def backtest_arguments(source: Path, start: dt.date, end: dt.date, folder: Path,
                       leave_out: tuple[str, ...] = ()) -> list[str]:
    """``failcast``'s arguments for one estate's backtest, scores and warehouse in ``folder``."""
    return ["backtest", "--source", str(source), "--start", str(start), "--end", str(end),
            "--out", str(folder / "scores.parquet"), "--work", str(folder / "work"),
            "--no-mlflow", "--quiet", *(a for family in leave_out for a in ("--leave-out", family))]


def summarise(name: str, span: str, scores_path: Path, seconds: float, peak_mb: int,
              load: tuple[float, float], leave_out: tuple[str, ...] = ()) -> EstateResult:
    """Headline metrics and the policy's actions from a backtest's output files."""
    import polars as pl

    table = pl.read_csv(scores_path.with_name(scores_path.stem + "_metrics.csv"))
    metrics = {row["scorer"]: {k: float(row[k]) for k in ("pr_auc", "roc_auc", "brier",
                                                          "recall_at_5pct")}
               for row in table.iter_rows(named=True)}
    first = table.row(0, named=True)
    steps = (pl.read_parquet(scores_path, columns=["retrained_on", "action", "scorer"])
             .unique("retrained_on"))
    actions = dict(steps.group_by("action").len().iter_rows())
    fallback = steps.filter(pl.col("scorer").str.starts_with("baseline:")).height
    return EstateResult(name, span, int(first["rows"]), int(first["failures"]), metrics,
                        steps.height, actions, fallback, round(seconds, 1), peak_mb, load,
                        tuple(leave_out))


def markdown(results: list[EstateResult], label: str) -> str:
    """One row per estate: the model's metrics, its ratio to each baseline, how it served."""
    lines = [
        f"| estate ({label}) | as-of range | rows / failures | PR-AUC | ROC-AUC | Brier | "
        "recall at 5% | PR-AUC x recent rate | PR-AUC x operator rule | "
        "Brier / recent rate | Brier / operator rule | retrainings (actions) | "
        "wall s | peak MB | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in results:
        m = r.metrics[MODEL]
        actions = ", ".join(f"{n} {a}" for a, n in sorted(r.actions.items()))
        lines.append(
            f"| {r.estate} | {r.range} | {r.rows:,} / {r.failures:,} | {m['pr_auc']:.4f} | "
            f"{m['roc_auc']:.3f} | {m['brier']:.5f} | {m['recall_at_5pct']:.3f} | "
            f"{r.ratio('pr_auc', BASELINES[0]):.2f} | {r.ratio('pr_auc', BASELINES[1]):.2f} | "
            f"{r.ratio('brier', BASELINES[0]):.3f} | {r.ratio('brier', BASELINES[1]):.3f} | "
            f"{r.retrainings} ({actions}) | {r.seconds:.0f} | {r.peak_mb:,} | "
            f"{r.load[0]:.1f}-{r.load[1]:.1f} |")
    lines.append("")
    lines.append("| estate | baseline (same rows) | PR-AUC | ROC-AUC | Brier | recall at 5% |")
    lines.append("|---|---|---:|---:|---:|---:|")
    for r in results:
        for name in BASELINES:
            b = r.metrics[name]
            lines.append(f"| {r.estate} | {name} | {b['pr_auc']:.4f} | {b['roc_auc']:.3f} | "
                         f"{b['brier']:.5f} | {b['recall_at_5pct']:.3f} |")
    return "\n".join(lines) + "\n"


def comparison(runs: dict[str, list[EstateResult]]) -> str:
    """Labels side by side, estate by estate: PR-AUC, Brier and the ratios to each baseline."""
    labels = list(runs)
    head = " | ".join(f"{metric} {label}" for metric in ("PR-AUC", "Brier", "PR-AUC x recent rate",
                                                          "PR-AUC x operator rule")
                      for label in labels)
    lines = [f"| estate | {head} |", "|---|" + "---:|" * (4 * len(labels))]
    by_label = {label: {r.estate: r for r in results} for label, results in runs.items()}
    estates = list(dict.fromkeys(r.estate for results in runs.values() for r in results))
    for estate in estates:
        cells = []
        for show in (lambda r: f"{r.metrics[MODEL]['pr_auc']:.4f}",
                     lambda r: f"{r.metrics[MODEL]['brier']:.5f}",
                     lambda r: f"{r.ratio('pr_auc', BASELINES[0]):.2f}",
                     lambda r: f"{r.ratio('pr_auc', BASELINES[1]):.2f}"):
            cells += [show(by_label[label][estate]) if estate in by_label[label] else "-"
                      for label in labels]
        lines.append(f"| {estate} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def stored(labels: list[str]) -> dict[str, list[EstateResult]]:
    """Results of earlier runs, by label, from ``quality_results.json``."""
    saved = HOME / "quality_results.json"
    found = json.loads(saved.read_text()) if saved.exists() else {}
    missing = [label for label in labels if label not in found]
    if missing:
        raise SystemExit(f"no stored results labelled {missing}; stored: {', '.join(found) or 'none'}")
    return {label: [EstateResult(**{**r, "load": tuple(r["load"]),
                                    "leave_out": tuple(r.get("leave_out", ()))})
                    for r in found[label].values()]
            for label in labels}


def main(argv: list[str] | None = None) -> int:
    import argparse

    from models.reasons import FAMILIES

    names = [*ESTATES, "lanl"]
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.quality",
        description="The deployed policy's backtest on every quality estate: one markdown table.")
    parser.add_argument("--estates", nargs="+", choices=names, default=names,
                        help="estates to run (default: all)")
    parser.add_argument("--leave-out", action="append", choices=FAMILIES, default=[],
                        metavar="FAMILY",
                        help="an ablation: every estate's backtest trains its models without this "
                             "feature family (repeatable; passed to failcast backtest): "
                             + ", ".join(map(repr, FAMILIES)))
    parser.add_argument("--out", help="write the markdown table to this file too")
    parser.add_argument("--label", default=_commit(), help="the column's label (default: the commit)")
    parser.add_argument("--show", nargs="+", metavar="LABEL",
                        help="run nothing: print the stored results of these labels (two or more "
                             "side by side)")
    args = parser.parse_args(argv)
    if args.show:
        runs = stored(args.show)
        table = "\n".join(markdown(results, label) for label, results in runs.items())
        if len(runs) > 1:
            table += "\n" + comparison(runs) + "\n" + estate_tables(runs)
        print(table)
        if args.out:
            Path(args.out).write_text(table)
        return 0
    results, started = [], dt.datetime.now(dt.UTC)
    for name in args.estates:
        result = backtest(name, tuple(args.leave_out), args.label)
        print(f"  {result.seconds:.0f} s, {result.peak_mb} MB, model PR-AUC "
              f"{result.metrics[MODEL]['pr_auc']:.4f}", flush=True)
        results.append(result)
    saved = HOME / "quality_results.json"
    previous = json.loads(saved.read_text()) if saved.exists() else {}
    previous[args.label] = {**previous.get(args.label, {}),
                            **{r.estate: asdict(r) for r in results}}
    saved.write_text(json.dumps(previous, indent=1))
    table = (f"Started {started:%Y-%m-%d %H:%M} UTC, finished {dt.datetime.now(dt.UTC):%H:%M} UTC, "
             f"on {os.cpu_count()} cores; "
             f"load is the 1-minute load average at the start and end of each backtest"
             + (f"; feature families left out: {', '.join(args.leave_out)}"
                if args.leave_out else "") + ".\n\n"
             + markdown(results, args.label))
    print("\n" + table)
    if args.out:
        Path(args.out).write_text(table)
    return 0


def _commit() -> str:
    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                           cwd=Path(__file__).parent, check=False)
    return found.stdout.strip() or "unknown"


if __name__ == "__main__":
    sys.exit(main())

"""``failcast``: the command line of operations, data scientists and change reviewers.

Every command keeps heavy imports (Dagster, MLflow, LightGBM) inside the function that needs
them, so ``failcast --help`` and ``failcast risk`` answer quickly. Errors a user can fix end
with one line on stderr and exit code 2, never a traceback (``FAILCAST_DEBUG=1`` shows it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

DEMO_SYSTEMS = 60
DEMO_START, DEMO_END = dt.date(2025, 4, 1), dt.date(2026, 9, 30)


class UsageError(ValueError):
    """The command line asks for something that cannot be done as asked."""


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (use YYYY-MM-DD)") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _settings(args: argparse.Namespace, **flags):
    from pipelines.settings import load_settings

    return load_settings(getattr(args, "source", None), getattr(args, "home", None), **flags)


def _say(message: str = "") -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ commands


def cmd_generate(args: argparse.Namespace) -> int:
    """Write a simulated securities estate (a source directory) to --out."""
    from features.demo_estate.generate import generate_estate

    started = time.perf_counter()
    summary = generate_estate(
        args.out,
        systems=args.systems,
        start=args.start,
        end=args.end,
        seed=args.seed,
        minutes_per_sample=args.minutes_per_sample,
        metrics=args.metrics,
        exchange=args.exchange,
        timezone=args.timezone,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    _say(
        f"wrote {summary.out}: {summary.systems} systems, {summary.sessions} trading days "
        f"({summary.first_as_of}..{summary.last_as_of}), {summary.metric_rows:,} metric rows, "
        f"{summary.incidents} incidents, {summary.changes} changes "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    """Check a source directory against the input contract; write nothing."""
    from features.source import Source
    from features.source_report import validate_source

    settings = _settings(args)
    report = validate_source(Source.open(settings.source), settings.timezone,
                             settings.quarantine_max_share)
    print(f"source {report.source.root}")
    for table in report.tables:
        if table.file is None:
            print(f"  {table.table:<10} (no {table.table}.csv: optional, treated as empty)")
            continue
        print(
            f"  {table.table:<10} {table.rows_read:>10,} rows  {table.rows_loaded:>10,} usable  "
            f"{table.rows_rejected:>7,} rejected ({table.reject_share:.2%})  "
            f"{table.values_dropped:>6,} values dropped"
        )
    m = report.metrics
    if m.rows:
        bad = int(m.problems["rows"].sum())
        print(
            f"  {'metrics':<10} {m.rows:>10,} rows  {m.rows - bad:>10,} usable  {bad:>7,} rejected "
            f"({bad / m.rows:.2%})  {m.systems} systems, {m.metrics} metrics, "
            f"{m.first_ts} .. {m.last_ts} UTC"
        )
    else:
        print(f"  {'metrics':<10} (no metrics/ files: features come from the case library alone)")
    first, last = report.incidents_span
    if first:
        print(f"  incidents opened {first} .. {last} UTC")
    problems = report.quarantine
    if problems.height or (m.rows and m.problems.height):
        print("quarantine (reason, rows, example):")
        for row in problems.iter_rows(named=True):
            print(f"  {row['table_name']}: {row['reason']} [{row['action']}] x{row['rows']}"
                  f" (e.g. row {row['example_row']}: {row['example_value']!r})")
        for row in m.problems.iter_rows(named=True):
            print(f"  metrics: {row['reason']} x{row['rows']} (e.g. {Path(row['example_file']).name}"
                  f" row {row['example_row']}: {row['example_value']!r})")
    verdict = "usable" if report.usable else "NOT usable"
    print(f"{verdict}: worst quarantined share {report.worst_share:.2%} "
          f"(limit {report.max_share:.2%})")
    return EXIT_OK if report.usable else EXIT_USAGE


def cmd_settings(args: argparse.Namespace) -> int:
    """Show the effective settings and where each value came from."""
    from pipelines.settings import describe

    for name, value, origin in describe(_settings(args)):
        print(f"{name:<22} {value:<45} {origin}")
    return EXIT_OK


def cmd_ingest(args: argparse.Namespace) -> int:
    """Load the source into the warehouse for one as-of day or a range (Dagster ingest_job)."""
    from pipelines.definitions import build_definitions
    from pipelines.runner import run_job

    settings = _settings(args)
    first, last = _range(args, settings)
    _say(f"ingest {first}..{last} from {settings.source}")
    run_job(build_definitions(settings), "ingest_job", settings, first, last)
    _say(f"warehouse: {settings.warehouse_path}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the whole pipeline on the embedded default estate under <home>/demo."""
    from features.demo_estate.generate import generate_estate
    from pipelines.definitions import build_definitions
    from pipelines.runner import run_job
    from pipelines.settings import default_home

    home = Path(args.home).resolve() if args.home else Path(os.environ.get("FAILCAST_HOME") or default_home())
    source = home / "demo"
    if args.fresh or not (source / "systems.csv").exists():
        _say(f"[1/2] generating the demo estate in {source}")
        generate_estate(source, systems=DEMO_SYSTEMS, start=DEMO_START, end=DEMO_END, seed=7,
                        minutes_per_sample=15, metrics=12, overwrite=True)
    else:
        _say(f"[1/2] using the demo estate in {source} (--fresh regenerates it)")
    settings = _settings(argparse.Namespace(source=str(source), home=str(home)))
    sessions = settings.calendar.sessions(settings.start or DEMO_START, DEMO_END)
    _say(f"[2/2] ingest {sessions[0]}..{sessions[-1]} ({len(sessions)} trading days)")
    run_job(build_definitions(settings), "ingest_job", settings, sessions[0], sessions[-1])
    _say(f"done: warehouse {settings.warehouse_path}")
    _say("open the Dagster UI with `make ui` (http://127.0.0.1:3000)")
    return EXIT_OK


def _range(args: argparse.Namespace, settings) -> tuple[dt.date, dt.date]:
    calendar = settings.calendar
    if args.date:
        if args.start or args.end:
            raise UsageError("give either --date or --start/--end")
        day = calendar.require_session(args.date)
        return day, day
    if not (args.start and args.end):
        raise UsageError("give --date D, or --start D and --end D")
    sessions = calendar.sessions(args.start, args.end)
    if not sessions:
        raise UsageError(f"no trading day between {args.start} and {args.end}")
    return sessions[0], sessions[-1]


# ------------------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="failcast",
        description="Forecast tomorrow's IT incidents per system for the change advisory board.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, func, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=func.__doc__)
        sub.set_defaults(func=func)
        return sub

    def where(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--source", help="source directory (default: $FAILCAST_SOURCE or <home>/demo)")
        sub.add_argument("--home", help="warehouse, MLflow and published output (default: ./data)")

    p = add("demo", cmd_demo, "run the whole pipeline on the embedded demo estate")
    p.add_argument("--home", help="where data goes (default: ./data)")
    p.add_argument("--fresh", action="store_true", help="regenerate the demo estate first")

    p = add("generate", cmd_generate, "write a simulated estate (demo data at any scale)")
    p.add_argument("--out", required=True, help="directory to write the source into")
    p.add_argument("--systems", type=_positive, default=DEMO_SYSTEMS, help="number of systems")
    p.add_argument("--start", type=_date, default=DEMO_START, help="first as-of day")
    p.add_argument("--end", type=_date, default=DEMO_END, help="last as-of day")
    p.add_argument("--seed", type=int, default=7, help="random seed (same seed, same estate)")
    p.add_argument("--minutes-per-sample", type=_positive, default=15,
                   help="metric sampling interval in minutes (1 = firm scale)")
    p.add_argument("--metrics", type=_positive, default=12, help="metrics per system (1-20)")
    p.add_argument("--exchange", default="XSHG", help="exchange calendar code")
    p.add_argument("--timezone", default="Asia/Shanghai", help="local timezone of the estate")
    p.add_argument("--overwrite", action="store_true", help="replace an existing estate in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = add("validate", cmd_validate, "check a source directory against the input contract")
    where(p)

    p = add("settings", cmd_settings, "show the effective settings and their origin")
    where(p)

    p = add("ingest", cmd_ingest, "load the source into the warehouse (one day or a range)")
    where(p)
    p.add_argument("--date", type=_date, help="as-of trading day")
    p.add_argument("--start", type=_date, help="first as-of day of a range")
    p.add_argument("--end", type=_date, help="last as-of day of a range")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        if os.environ.get("FAILCAST_DEBUG"):
            raise
        return _report(exc)


def _report(exc: Exception) -> int:
    from features.source import SourceError
    from features.trading_time import CalendarRangeError
    from features.warehouse import WarehouseMissing
    from pipelines.settings import SettingsError

    known = (SourceError, SettingsError, CalendarRangeError, WarehouseMissing, UsageError,
             FileExistsError, FileNotFoundError, ValueError)
    if isinstance(exc, known):
        _say(f"failcast: error: {exc}")
        return EXIT_USAGE
    from pipelines.runner import RunFailed

    if isinstance(exc, RunFailed):
        _say(f"failcast: {exc}")
        return EXIT_ERROR
    _say(f"failcast: unexpected {type(exc).__name__}: {exc} (FAILCAST_DEBUG=1 shows the traceback)")
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())

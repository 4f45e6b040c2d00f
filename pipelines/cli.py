"""``failcast``: the command line of operations, data scientists and change reviewers.

Every command keeps heavy imports (Dagster, MLflow, LightGBM) inside the function that needs
them, so ``failcast --help`` and ``failcast risk`` answer quickly. A problem failcast
understands (``features.errors``) ends with one line on stderr and its exit code (2 usage or
data, 3 a resource unavailable); anything else is a bug: exit 1, one line, and
``FAILCAST_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

from features.errors import EXIT_BUG, EXIT_OK, EXIT_USAGE, FailcastError, UsageError

DEMO_SYSTEMS = 60
DEMO_START, DEMO_END = dt.date(2025, 4, 1), dt.date(2026, 9, 24)
DEMO_BACKTEST_SESSIONS = 40  # weekly retrains over two months: the demo stays short


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (use YYYY-MM-DD)") from None


def _instant(text: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (use YYYY-MM-DD HH:MM, optionally with an offset)") from None


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
        metric_sessions=args.metric_days,
        profile=args.profile,
    )
    _say(
        f"wrote {summary.out}: {summary.systems} systems, {summary.sessions} trading days "
        f"({summary.first_as_of}..{summary.last_as_of}), {summary.metric_rows:,} metric rows, "
        f"{summary.incidents} incidents, {summary.changes} changes "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return EXIT_OK


def cmd_snapshot(args: argparse.Namespace) -> int:
    """Write a copy of a source as it stood at an instant: incidents opened before it (those
    still open then without resolved_at), changes raised before it (unfinished ones without
    their outcome), metric samples before it. A naive time is local to the source's timezone.
    Replays a past night exactly as the nightly run saw it."""
    from features.snapshot import snapshot_source

    settings = _settings(args)
    known_at = args.as_known_at
    if known_at.tzinfo is None:
        known_at = known_at.replace(tzinfo=settings.calendar.tz)
    snapshot = snapshot_source(settings.source, args.out, known_at, settings.timezone,
                               overwrite=args.overwrite)
    _say(f"wrote {snapshot.out}: the source as known at {known_at.isoformat()} "
         f"({snapshot.incidents:,} incidents, {snapshot.changes:,} changes, "
         f"{snapshot.metric_files} metric files)")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    """Check a source directory against the input contract, judging each as-of day as the
    nightly run does; write nothing. Exit 0 when every day would be accepted, 2 otherwise."""
    from features.source import Source
    from features.source_report import validate_source

    settings = _settings(args)
    report = validate_source(Source.open(settings.source), settings.calendar,
                             settings.quarantine_max_share)
    print(f"source {report.source.root}")
    for table in report.tables:
        if table.file is None:
            print(f"  {table.table:<10} (no {table.table}.csv: optional, treated as empty)")
            continue
        flagged = f"  {table.rows_flagged:,} kept for review" if table.rows_flagged else ""
        print(
            f"  {table.table:<10} {table.rows_read:>10,} rows  {table.rows_loaded:>10,} usable  "
            f"{table.rows_rejected:>7,} rejected ({table.reject_share:.2%})  "
            f"{table.values_dropped:>6,} values dropped{flagged}"
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
    limit = f"{report.max_share:.2%}"
    refused, shown = report.refused_days, 10
    if refused.height:
        print(f"days the nightly would refuse (quarantined metric rows above {limit} of the day):")
        for row in refused.head(shown).iter_rows(named=True):
            print(f"  {row['as_of']}: {row['rejected']:,} of {row['rows']:,} metric rows "
                  f"quarantined ({row['share']:.2%})")
        if refused.height > shown:
            print(f"  … and {refused.height - shown} more day(s)")
    for table in report.refused_tables:
        print(f"every night would be refused: {table.table} has {table.reject_share:.2%} of its "
              f"rows quarantined (limit {limit})")
    verdict = "usable" if report.usable else "NOT usable"
    days = f"{refused.height} of {report.day_shares.height} day(s) would be refused; " if m.rows else ""
    print(f"{verdict}: {days}worst quarantined share {report.worst_share:.2%} (limit {limit})")
    return EXIT_OK if report.usable else EXIT_USAGE


def cmd_settings(args: argparse.Namespace) -> int:
    """Show the effective settings and where each value came from."""
    from pipelines.settings import describe

    for name, value, origin, meaning in describe(_settings(args)):
        print(f"{name:<22} {value:<40} {origin:<24} {meaning}")
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


def cmd_backfill(args: argparse.Namespace) -> int:
    """Build a source's history: ingest and features for every trading day from --start to
    --end, in --workers processes at once. Each piece is a Dagster run (make ui lists them)."""
    from pipelines.backfill import run_backfill

    settings = _settings(args)
    if args.end < args.start:
        raise UsageError(f"--end {args.end} is before --start {args.start}")
    sessions = settings.calendar.sessions(args.start, args.end)
    if not sessions:
        raise UsageError(f"no trading day between {args.start} and {args.end}")
    _say(f"backfill {sessions[0]}..{sessions[-1]} ({len(sessions)} trading days) from "
         f"{settings.source} with {args.workers} worker{'s' if args.workers > 1 else ''}")
    started = time.perf_counter()

    def progress(done: int, total: int, task, seconds: float) -> None:
        elapsed = time.perf_counter() - started
        _say(f"  [{done}/{total}] {task} ({seconds:.1f} s; {elapsed:.0f} s elapsed)")

    result = run_backfill(settings, sessions[0], sessions[-1], args.workers, on_run=progress)
    _say(f"done: {result.sessions} trading days in {result.seconds:.0f} s, {len(result.runs)} "
         f"Dagster runs tagged failcast/backfill={result.backfill_id}")
    _say(f"  tables: {settings.home / 'lake'} (read by name through {settings.warehouse_path})")
    return EXIT_OK


def cmd_nightly(args: argparse.Namespace) -> int:
    """Run the evening job for an as-of day: ingest, features, score, publish.

    A night whose feeds are stale (metrics end before the day, an incident or change feed that
    stopped) or on which too many systems sent no telemetry is refused: exit 2 with one line
    naming the check and its reason, and the previous publication stays as it was."""
    from pipelines.definitions import build_definitions
    from pipelines.run_tags import ALLOW_STALE
    from pipelines.runner import run_job

    settings = _settings(args)
    day = settings.calendar.require_session(args.date)
    _say(f"nightly run for as-of {day} ({settings.source})"
         + (": --allow-stale, stale or missing data is published, marked" if args.allow_stale else ""))
    run_job(build_definitions(settings), "nightly_job", settings, day, day,
            run_tags={ALLOW_STALE: "true"} if args.allow_stale else None)
    target = settings.calendar.next_session(day)
    _say(f"published: {settings.published_dir / str(target) / 'change_review.html'}")
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    """Retrain as of a day and let the policy decide what serves: the candidate is judged on
    held-out days against the baselines and the champion's configuration (beyond noise), and
    the configuration that serves is refitted through the latest labelled day."""
    from pipelines.definitions import build_definitions
    from pipelines.runner import run_job

    settings = _settings(args)
    config = {"as_of": args.as_of.isoformat()} if args.as_of else {}
    result = run_job(build_definitions(settings), "retrain_job", settings, run_config={"ops": {
        "training_set": {"config": config},
        "failure_model": {"config": {"retire_broken_champion": args.retire_broken_champion}},
    }})
    found = result.asset_materializations_for_node("failure_model")
    meta = {k: v.value for k, v in found[-1].metadata.items()} if found else {}
    _say(f"{meta.get('action', '?')}: {meta.get('serving', '?')} serves, trained through "
         f"{meta.get('trained_through', '?')}; registered {meta.get('registered', 'nothing')}")
    _say(f"  {meta.get('decision', '')}")
    if meta.get("mlflow_run"):
        _say(f"  MLflow: {meta['mlflow_run']} (make mlflow-ui)")
    return EXIT_OK


def cmd_backtest(args: argparse.Namespace) -> int:
    """Walk-forward backtest of any source directory that replays the deployed retraining policy
    (cadence, hold-out, gate, refit, fallback): every as-of day scored by what would have served
    then, trained only on the labels known at its cutoff. Writes system_id, as_of, target_date,
    risk (and the baselines, what served, and the outcome where known) to --out, .parquet or
    .csv, and logs the run to MLflow."""
    import shutil
    import tempfile

    from models.backtest_run import backtest_source

    settings = _settings(args)
    if args.end < args.start:
        raise UsageError(f"--end {args.end} is before --start {args.start}")
    policy = _backtest_policy(settings, args)
    out = Path(args.out).resolve()
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise UsageError(f"--out must end in .parquet or .csv, got {out.name}")
    work = Path(args.work).resolve() if args.work else Path(tempfile.mkdtemp(prefix="failcast-backtest-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        result = backtest_source(
            settings.source, settings.calendar, args.start, args.end, work, out=out,
            policy=policy, model_name=settings.model_name, threads=settings.threads,
            memory_limit=settings.memory_limit, progress=not args.quiet,
        )
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    scores = result.scores
    _say(f"wrote {out}: {scores.height:,} scores, {scores['system_id'].n_unique():,} systems, "
         f"{scores['as_of'].n_unique()} as-of days, {len(result.steps)} {policy.config.cadence} "
         f"retrainings in {time.perf_counter() - started:.0f} s")
    actions: dict[str, int] = {}
    for step in result.steps:
        actions[step.action] = actions.get(step.action, 0) + 1
    _say("  policy: " + ", ".join(f"{n} {a}" for a, n in sorted(actions.items())))
    fallback = [s for s in result.steps if s.scorer.startswith("baseline:")]
    if fallback:
        _say(f"  {len(fallback)} period(s) scored by a baseline (no model had passed the gate), "
             f"first after {fallback[0].retrained_on}: {fallback[0].note[:300]}")
    if result.metrics.height:
        from models.spreadsheet import write_safe_csv

        metrics_path = out.with_name(out.stem + "_metrics.csv")
        write_safe_csv(result.metrics, metrics_path)
        _print_metrics(result.metrics)
        _say(f"metrics: {metrics_path}")
        if not args.no_mlflow:
            _log_backtest(settings, args, result, policy)
    else:
        _say("no outcome is known for the range yet: no metrics")
    return EXIT_OK


def _print_metrics(table) -> None:
    columns = ("pr_auc", "roc_auc", "brier", "precision_at_5pct", "recall_at_5pct", "mean_risk")
    print(f"{'scorer':<22}" + "".join(f"{c:>19}" for c in columns))
    for row in table.iter_rows(named=True):
        print(f"{row['scorer']:<22}" + "".join(f"{row[c]:>19.5f}" for c in columns))
    first = table.row(0, named=True)
    print(f"rows {int(first['rows']):,}, failures {int(first['failures']):,}, "
          f"base rate {first['base_rate']:.5f}")


def _backtest_policy(settings, args):
    """The deployed policy, with the cadence, training window and feature families left out
    that the command line asks for."""
    from dataclasses import replace

    from models.lifecycle import RetrainPolicy, with_model

    policy = settings.policy()
    config = with_model(policy.config, leave_out=args.leave_out)
    return RetrainPolicy(replace(config, cadence=args.retrain or config.cadence,
                                 train_sessions=args.train_days or config.train_sessions))


def _log_backtest(settings, args, result, policy) -> None:
    from models.backtest_run import log_backtest

    registry = settings.registry()
    run_id, experiment_id = log_backtest(
        registry, result.scores, result.metrics, result.steps, policy,
        {"source": settings.source, "start": args.start, "end": args.end}, {})
    _say(f"MLflow: {registry.run_url(run_id, experiment_id)} (make mlflow-ui)")


def cmd_risk(args: argparse.Namespace) -> int:
    """Published risk for a target day (the day the CAB reviews), from the risk_scores table."""
    import json

    import polars as pl

    from models.published import published_risk
    from models.reasons import lines

    settings = _settings(args)
    with settings.warehouse().reader() as con:
        day = published_risk(con, settings.calendar, args.date, args.system)
    frame = day.scores
    if args.format == "json":
        records = frame.with_columns(frame["as_of"].cast(str), frame["target_date"].cast(str),
                                     frame["scored_at"].cast(str)).to_dicts()
        for record in records:
            for key in ("top_factors", "similar_incidents", "scheduled_changes"):
                record[key] = json.loads(record[key] or "[]")
        print(json.dumps(records, indent=2, ensure_ascii=False))
    elif args.format == "csv":
        from models.spreadsheet import neutralise_formulas

        sys.stdout.write(neutralise_formulas(frame).write_csv())
    else:
        first = frame.row(0, named=True)
        print(f"risk of an incident {day.window}, for target day {day.target_date}; "
              f"model {first['model_name']} v{first['model_version']}")
        if day.shared["reasons"]:
            print(f"for every system: {'; '.join(day.shared['reasons'])} "
                  f"(odds x{day.shared['odds']:.1f} on average)")
        flagged = frame.filter(pl.col("data_status").fill_null("not judged") != "ok")
        if flagged.height:
            print(f"data: {flagged.height} of {frame.height} systems' data is not ok; their risk "
                  "may be understated (column data, and data_notes in --format json/csv)")
        print(f"{'rank':>4}  {'system':<14} {'risk':>7}  {'tier':<9} {'data':<12} {'changes':>7}  "
              "main reasons")
        for row in frame.head(args.limit).iter_rows(named=True):
            said = "; ".join(f"{'+' if r['contribution'] > 0 else '-'} {r['text']}"
                             for r in lines(json.loads(row["top_factors"] or "[]"))[:2])
            changes = len(json.loads(row["scheduled_changes"] or "[]"))
            data = row["data_status"] or "not judged"
            print(f"{row['rank']:>4}  {row['system_id']:<14} {row['risk']:>7.2%}  {row['tier']:<9} "
                  f"{data:<12} {changes:>7}  {said}")
            if data != "ok" and row["data_notes"]:
                print(f"{'':>36}{row['data_notes']}")
        if frame.height > args.limit:
            print(f"… {frame.height - args.limit} more (--limit, or --format csv)")
    return EXIT_OK


def cmd_review_change(args: argparse.Namespace) -> int:
    """Approve, extra review or defer a change, from its system's published risk.

    Exit code 0 approve, 10 extra review, 20 defer, 2 usage or data error."""
    from models.decisions import EXIT_CODES
    from models.reasons import estate_effects, lines
    from models.review import review_change

    settings = _settings(args)
    calendar = settings.calendar
    with settings.warehouse().reader() as con:
        review = review_change(con, calendar, args.change_id)
    change, row = review.change, review.score
    tz = calendar.tz
    local = lambda moment: moment.replace(tzinfo=dt.UTC).astimezone(tz).strftime("%Y-%m-%d %H:%M") if moment else "?"  # noqa: E731
    print(f"{change['change_id']}  {change['description'] or ''}")
    print(f"  decision   {review.action.upper()}: {'; '.join(review.reasons)}")
    if row is None:
        print(f"  system     {change['system_id']}: not scored as of {review.as_of}")
    else:
        print(f"  system     {row['system_id']}: risk {row['risk']:.1%} ({row['tier']}), "
              f"rank {row['rank']} of {review.systems_scored} for {row['target_date']} "
              f"(as of {review.as_of})")
    print(f"  change     {change['change_type'] or 'unspecified'}, risk {change['risk_level'] or 'unstated'}, "
          f"{local(change['scheduled_start'])} to {local(change['scheduled_end'])} {calendar.timezone}")
    if review.raised_after_cutoff:
        print("  note       raised after the cutoff: the published risk did not know about it")
    for line in lines(review.factors):
        print(f"  reason     {line['direction']} risk: {line['text']}")
    shared = estate_effects([review.factors])["reasons"]
    if shared:
        print(f"  tonight    for every system: {'; '.join(shared)}")
    for incident in review.similar[:3]:
        print(f"  similar    {incident['incident_id']} ({incident.get('match') or incident['opened_at']}): "
              f"{incident['title'] or ''}")
        print(f"             root cause: {incident['root_cause'] or 'not recorded'}; "
              f"remediation: {incident['remediation'] or 'not recorded'}")
    if row is not None:
        print(f"  model      {row['model_name']} v{row['model_version']} (MLflow run {row['mlflow_run_id']})")
    return EXIT_CODES[review.action]


def cmd_track_record(args: argparse.Namespace) -> int:
    """Foreseen vs missed: every score against what happened in its window, from the published
    scores (each as it was published; refreshes the forecast_outcomes table) or, with
    --backtest FILE, from a backtest's scores (labelled as a backtest). Writes an HTML page and
    CSV files."""
    from models import track_record as tr

    settings = _settings(args)
    if args.start and args.end and args.end < args.start:
        raise UsageError(f"--end {args.end} is before --start {args.start}")
    options = {"max_severity": settings.max_severity, "thresholds": settings.tier_thresholds,
               "watch_list": args.watch_list or settings.watch_list_size}
    if args.backtest:
        path = Path(args.backtest).resolve()
        record, outcomes = tr.backtest_record(path, settings.source, settings.calendar,
                                              first=args.start, last=args.end, **options)
        folder, prefix = Path(args.out).resolve() if args.out else path.parent, f"{path.stem}_track_record"
    else:
        with settings.warehouse().reader() as con:
            scores = tr.published_scores(con, args.start, args.end)
            record, outcomes = tr.track_record(
                con, settings.calendar, scores, known_through=tr.data_through(con), kind="published",
                label=f"risk_scores in {settings.warehouse_path}", **options)
        with settings.warehouse().writer() as con:
            tr.save_outcomes(con, outcomes)
        folder = Path(args.out).resolve() if args.out else settings.published_dir / "track-record"
        prefix = "track_record"
    files = tr.write_report(folder, prefix, record, outcomes)
    print("\n".join(tr.in_words(record)))
    _say(f"wrote {files['html']}, {files['csv'].name} and {files['outcomes'].name}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the whole pipeline on the embedded default estate under <home>/demo."""
    from features.demo_estate.generate import generate_estate
    from pipelines.definitions import build_definitions
    from pipelines.runner import run_job
    from pipelines.settings import default_home

    started = time.perf_counter()
    home = Path(args.home).resolve() if args.home else Path(os.environ.get("FAILCAST_HOME") or default_home())
    source = home / "demo"
    if args.fresh or not (source / "systems.csv").exists():
        _say(f"[1/6] generating the demo estate in {source}")
        generate_estate(source, systems=DEMO_SYSTEMS, start=DEMO_START, end=DEMO_END, seed=7,
                        minutes_per_sample=15, metrics=12, overwrite=True)
    else:
        _say(f"[1/6] using the demo estate in {source} (--fresh regenerates it)")
    settings = _settings(argparse.Namespace(source=str(source), home=str(home)))
    calendar = settings.calendar
    sessions = calendar.sessions(settings.start or DEMO_START, DEMO_END)
    history, today = sessions[:-1], sessions[-1]
    defs = build_definitions(settings)
    _say(f"[2/6] ingest and features for {history[0]}..{history[-1]} ({len(history)} trading days, "
         "one single-run backfill)")
    run_job(defs, "features_job", settings, history[0], history[-1])
    _say(f"[3/6] train as of {today} (MLflow, champion gate)")
    run_job(defs, "retrain_job", settings,
            run_config={"ops": {"training_set": {"config": {"as_of": today.isoformat()}}}})
    first = calendar.sessions_back(history[-1], DEMO_BACKTEST_SESSIONS)
    _say(f"[4/6] the deployed retraining policy replayed over {first}..{history[-2]} "
         "(walk-forward backtest; docs/model.md reports a whole year), and its track record")
    run_job(defs, "backtest_job", settings,
            run_config={"ops": {"backtest": {"config": {"start": first.isoformat()}}}})
    _say(f"[5/6] nightly run for as-of {today}: ingest, features, score, publish")
    run_job(defs, "nightly_job", settings, today, today)
    _say("[6/6] track record of the published nights")
    run_job(defs, "track_record_job", settings)
    target = calendar.next_session(today)
    report = settings.published_dir / str(target) / "change_review.html"
    _say(f"done in {time.perf_counter() - started:.0f} s")
    _say(f"  CAB report:  {report}")
    _say(f"  track record of the backtest: {settings.home / 'backtest' / 'backtest_track_record.html'}"
         "   (published nights: failcast track-record)")
    _say(f"  risk table:  failcast risk --date {target}   (or `failcast review-change <CHANGE_ID>`)")
    _say("  Dagster UI:  make ui         -> http://127.0.0.1:3000")
    _say("  MLflow UI:   make mlflow-ui  -> http://127.0.0.1:5000")
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
    from models.reasons import FAMILIES

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
    p.add_argument("--metric-days", type=_positive,
                   help="write metrics for the last N trading days only (the rest: case library)")
    p.add_argument("--profile", default="demo",
                   help="mix and strength of the failure mechanisms: demo (default), change-heavy, "
                        "faint-precursors or maintenance-driven (docs/model.md)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing estate in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = add("snapshot", cmd_snapshot, "copy a source as it stood at an instant (a past night)")
    where(p)
    p.add_argument("--as-known-at", type=_instant, required=True,
                   help="ISO time, e.g. '2026-09-24 18:00' (local to the source) or with an offset")
    p.add_argument("--out", required=True, help="directory to write the snapshot into")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")

    p = add("validate", cmd_validate, "check a source directory against the input contract")
    where(p)

    p = add("settings", cmd_settings, "show the effective settings and their origin")
    where(p)

    p = add("nightly", cmd_nightly, "the evening run for an as-of day: ingest, features, score, publish")
    where(p)
    p.add_argument("--date", type=_date, required=True, help="as-of trading day")
    p.add_argument("--allow-stale", action="store_true",
                   help="publish even when feeds are stale or telemetry is missing across the "
                        "estate (every surface marks it); by default such a night is refused, exit 2")

    p = add("train", cmd_train, "retrain as of a day; the policy's gate decides what serves")
    where(p)
    p.add_argument("--as-of", type=_date, help="train on the labels known at this day (default: latest)")
    p.add_argument("--retire-broken-champion", action="store_true",
                   help="first take the alias 'champion' off a version whose artifacts are "
                        "missing or unreadable (it stays registered, tagged 'retired')")

    p = add("backtest", cmd_backtest, "walk-forward backtest of any source directory")
    where(p)
    p.add_argument("--start", type=_date, required=True, help="first as-of day to score")
    p.add_argument("--end", type=_date, required=True, help="last as-of day to score")
    p.add_argument("--out", required=True, help="output file, .parquet or .csv")
    p.add_argument("--retrain", choices=("monthly", "weekly"),
                   help="retraining cadence (default: [model] retrain_every, weekly)")
    p.add_argument("--train-days", type=_positive,
                   help="trading days of labels per training (default: [model] train_window_days, 500)")
    p.add_argument("--leave-out", action="append", choices=FAMILIES, default=[], metavar="FAMILY",
                   help="replay the policy with this feature family left out of every model it "
                        "trains (an ablation; repeatable): " + ", ".join(map(repr, FAMILIES)))
    p.add_argument("--work", help="keep the backtest's warehouse in this directory (default: a temporary one)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log the backtest to MLflow")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = add("risk", cmd_risk, "published risk per system for a target day")
    where(p)
    p.add_argument("--date", type=_date, help="target day the CAB reviews (default: the latest published)")
    p.add_argument("--system", help="one system only")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--limit", type=_positive, default=25, help="rows of the table format")

    p = add("review-change", cmd_review_change,
            "approve (exit 0), extra review (10) or defer (20) a scheduled change")
    where(p)
    p.add_argument("change_id", help="the change's id in changes.csv")

    p = add("track-record", cmd_track_record,
            "foreseen vs missed: published scores (or a backtest's) against what happened")
    where(p)
    p.add_argument("--start", type=_date, help="first as-of day (default: the first scored)")
    p.add_argument("--end", type=_date, help="last as-of day (default: the last scored)")
    p.add_argument("--backtest", metavar="FILE",
                   help="a backtest's scores (failcast backtest --out FILE) instead of the published ones")
    p.add_argument("--watch-list", type=_positive,
                   help="systems on the watch list each night (default: [risk] watch_list_size, 10)")
    p.add_argument("--out", help="folder for the page and CSVs (default: <home>/published/track-record, "
                                 "or beside the backtest file)")

    p = add("backfill", cmd_backfill,
            "build a source's history (ingest and features) with parallel workers")
    where(p)
    p.add_argument("--start", type=_date, required=True, help="first as-of day")
    p.add_argument("--end", type=_date, required=True, help="last as-of day")
    p.add_argument("--workers", type=_positive, default=1,
                   help="processes building trading days at once (default 1)")

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
    except BrokenPipeError:  # `failcast risk | head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        if os.environ.get("FAILCAST_DEBUG"):
            raise
        return _report(exc)


def _report(exc: Exception) -> int:
    if isinstance(exc, FailcastError):
        _say(f"failcast: error: {exc}")
        return exc.exit_code
    _say(f"failcast: internal error {type(exc).__name__}: {exc} (a bug: FAILCAST_DEBUG=1 shows "
         "the traceback)")
    return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())

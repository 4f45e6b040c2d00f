"""Trading time: sessions, cutoffs and label windows.

This is the only module that decides what a trading day is, when an as-of day ends (its
cutoff) and which span of time a label covers. Features, labels, models, partitions and the
CLI all ask it; nothing else computes a cutoff.

- The as-of day ``d`` is a session. Its cutoff is ``d`` at the configured local time.
- Features for ``d`` see data strictly before ``cutoff(d)``.
- The target day ``t`` is the next session after ``d``; the label window is
  ``(cutoff(d), cutoff(t)]``. Windows are gapless: a Friday's window runs to Monday's cutoff.
- Metric samples belong to the partition of the first session whose cutoff is after them:
  ``[cutoff(previous session), cutoff(d))``.

Inside the warehouse every instant is a naive UTC ``TIMESTAMP``; ``cutoff_utc`` and friends
give the bounds in that representation so SQL compares like with like.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from features.errors import DataError

ALWAYS_OPEN = frozenset({"24/7", "24/5"})
EARLIEST = dt.date(1990, 1, 1)
# For calendars whose holidays come from rules rather than a recorded list, trust them this far.
RULE_HORIZON_DAYS = 366
# Length of the "after the close" window on calendars that never close.
ALWAYS_OPEN_AFTER_CLOSE = dt.timedelta(hours=3)
# A gap of 4+ calendar days between sessions is a holiday break, not a weekend.
LONG_BREAK_DAYS = 4


class CalendarRangeError(DataError):
    """A date lies outside the range the trading calendar knows."""


@dataclass(frozen=True)
class LabelWindow:
    """The span ``(start, end]`` in which an incident makes the label of ``as_of`` positive."""

    as_of: dt.date
    target_date: dt.date
    start: dt.datetime
    end: dt.datetime

    def contains(self, instant: dt.datetime) -> bool:
        return self.start < instant <= self.end


def _to_date(value: dt.date | str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as exc:
        raise DataError(f"not a date: {value!r} (expected YYYY-MM-DD)") from exc


class TradingCalendar:
    """Sessions of one exchange (or ``24/7``), overridden date by date by ``calendar.csv``.

    ``overrides`` maps a date to whether it is a trading day. Beyond the exchange's recorded
    range the overrides are the whole truth: a date they do not list is not a trading day.
    """

    def __init__(
        self,
        exchange: str = "XSHG",
        timezone: str = "Asia/Shanghai",
        cutoff: dt.time = dt.time(18, 0),
        overrides: Mapping[dt.date, bool] | None = None,
        today: dt.date | None = None,
    ) -> None:
        import exchange_calendars as xcals

        self.exchange = exchange
        self.timezone = timezone
        self.tz = ZoneInfo(timezone)
        self.cutoff_time = cutoff
        self.always_open = exchange in ALWAYS_OPEN
        today = today or dt.date.today()
        if not xcals.calendar_utils.global_calendar_dispatcher.has_calendar(exchange):
            raise DataError(
                f"unknown exchange calendar {exchange!r}: use an exchange_calendars code such as "
                "XSHG, XHKG, XNYS, or '24/7'"
            )
        # The calendar class knows how far its recorded holidays reach (XSHG: to 2026-12-31).
        factory = type(xcals.get_calendar(exchange))
        lo, hi = factory.bound_min(), factory.bound_max()
        start = max(EARLIEST, lo.date()) if lo is not None else EARLIEST
        end = hi.date() if hi is not None else today + dt.timedelta(days=RULE_HORIZON_DAYS)
        cal = xcals.get_calendar(exchange, start=start.isoformat(), end=end.isoformat())
        sessions = {ts.date() for ts in cal.sessions}
        closes = {ts.date(): close.to_pydatetime() for ts, close in cal.closes.items()}
        opens = {ts.date(): moment.to_pydatetime() for ts, moment in cal.opens.items()}
        self._regular_close = (cal.close_times[-1][1], ZoneInfo(str(cal.tz)))
        self._regular_open = (cal.open_times[0][1], ZoneInfo(str(cal.tz)))

        overrides = dict(overrides or {})
        first, last = start, end
        if overrides:
            first, last = min(first, min(overrides)), max(last, max(overrides))
        for day, trading in overrides.items():
            if trading:
                sessions.add(day)
            else:
                sessions.discard(day)
        self.first_day, self.last_day = first, last
        self.overrides = overrides
        self._sessions = np.array(sorted(sessions), dtype="datetime64[D]")
        self._closes = closes
        self._opens = opens

    # ----------------------------------------------------------------- range and lookup
    def __repr__(self) -> str:
        return (
            f"TradingCalendar({self.exchange!r}, {self.timezone!r}, cutoff={self.cutoff_time}, "
            f"{self.first_day}..{self.last_day})"
        )

    def check(self, day: dt.date | str) -> dt.date:
        """Return ``day`` as a date, or raise when the calendar does not cover it."""
        day = _to_date(day)
        if not self.first_day <= day <= self.last_day:
            raise CalendarRangeError(
                f"{day} is outside the {self.exchange} trading calendar "
                f"({self.first_day} to {self.last_day}); add its dates to calendar.csv "
                "(columns date,is_trading_day) in the source directory"
            )
        return day

    def is_session(self, day: dt.date | str) -> bool:
        day = np.datetime64(self.check(day), "D")
        i = np.searchsorted(self._sessions, day)
        return bool(i < len(self._sessions) and self._sessions[i] == day)

    def require_session(self, day: dt.date | str) -> dt.date:
        day = self.check(day)
        if not self.is_session(day):
            i = np.searchsorted(self._sessions, np.datetime64(day, "D"))
            hint = f"; the next one is {self._sessions[i]}" if i < len(self._sessions) else ""
            raise DataError(f"{day} is not a trading day on the {self.exchange} calendar{hint}")
        return day

    def sessions(self, start: dt.date | str, end: dt.date | str) -> list[dt.date]:
        """Sessions from ``start`` to ``end``, both inclusive."""
        start, end = self.check(start), self.check(end)
        lo = np.searchsorted(self._sessions, np.datetime64(start, "D"), side="left")
        hi = np.searchsorted(self._sessions, np.datetime64(end, "D"), side="right")
        return [d.item() for d in self._sessions[lo:hi]]

    def non_sessions(self, start: dt.date | str, end: dt.date | str) -> list[dt.date]:
        """Calendar days from ``start`` to ``end`` that are not sessions."""
        start, end = self.check(start), self.check(end)
        trading = set(self.sessions(start, end))
        days = (start + dt.timedelta(days=i) for i in range((end - start).days + 1))
        return [d for d in days if d not in trading]

    def next_session(self, day: dt.date | str) -> dt.date:
        """The first session strictly after ``day``."""
        day = self.check(day)
        i = np.searchsorted(self._sessions, np.datetime64(day, "D"), side="right")
        if i >= len(self._sessions):
            raise CalendarRangeError(
                f"no trading day after {day} in the {self.exchange} calendar (it ends "
                f"{self.last_day}); add the coming dates to calendar.csv in the source directory"
            )
        return self._sessions[i].item()

    def previous_session(self, day: dt.date | str) -> dt.date:
        """The last session strictly before ``day``."""
        day = self.check(day)
        i = np.searchsorted(self._sessions, np.datetime64(day, "D"), side="left")
        if i == 0:
            raise CalendarRangeError(
                f"no trading day before {day} in the {self.exchange} calendar (it starts "
                f"{self.first_day}); add earlier dates to calendar.csv in the source directory"
            )
        return self._sessions[i - 1].item()

    def last_session_on_or_before(self, day: dt.date | str) -> dt.date:
        day = self.check(day)
        return day if self.is_session(day) else self.previous_session(day)

    def sessions_back(self, day: dt.date | str, count: int) -> dt.date:
        """The session ``count`` sessions before session ``day`` (clamped to the first)."""
        day = self.require_session(day)
        i = int(np.searchsorted(self._sessions, np.datetime64(day, "D")))
        return self._sessions[max(0, i - count)].item()

    # ----------------------------------------------------------------- instants
    def cutoff(self, day: dt.date | str) -> dt.datetime:
        """The local instant that ends as-of day ``day``."""
        return dt.datetime.combine(self.check(day), self.cutoff_time, tzinfo=self.tz)

    def cutoff_utc(self, day: dt.date | str) -> dt.datetime:
        """``cutoff(day)`` as the warehouse stores instants: naive UTC."""
        return to_utc_naive(self.cutoff(day))

    def label_window(self, as_of: dt.date | str) -> LabelWindow:
        as_of = self.require_session(as_of)
        target = self.next_session(as_of)
        return LabelWindow(as_of, target, self.cutoff(as_of), self.cutoff(target))

    def metrics_window(self, as_of: dt.date | str) -> tuple[dt.datetime, dt.datetime]:
        """``[start, end)`` of the samples that first become visible on ``as_of``."""
        as_of = self.require_session(as_of)
        return self.cutoff(self.previous_session(as_of)), self.cutoff(as_of)

    def after_close_start(self, day: dt.date | str) -> dt.datetime:
        """Start of the post-market hours of ``day``: the close, or 3 h before the cutoff."""
        day = self.check(day)
        cutoff = self.cutoff(day)
        if self.always_open:
            return cutoff - ALWAYS_OPEN_AFTER_CLOSE
        close = self._closes.get(day)
        if close is None:
            close_time, exchange_tz = self._regular_close
            close = dt.datetime.combine(day, close_time, tzinfo=exchange_tz)
        close = close.astimezone(self.tz)
        if not cutoff - dt.timedelta(hours=12) < close < cutoff:
            return cutoff - ALWAYS_OPEN_AFTER_CLOSE
        return close

    def target_open(self, as_of: dt.date | str) -> dt.datetime:
        """When trading starts on the target day of ``as_of``: the exchange's open, inside the
        label window. A site that never closes is in session the whole window, so its open is
        the window's start (the cutoff of ``as_of``), as it is when the exchange's open does not
        fall inside the window (an exchange far from the configured timezone)."""
        as_of = self.check(as_of)
        start = self.cutoff(as_of)
        if self.always_open:
            return start
        target = self.next_session(as_of)
        moment = self._opens.get(target)
        if moment is None:
            open_time, exchange_tz = self._regular_open
            moment = dt.datetime.combine(target, open_time, tzinfo=exchange_tz)
        moment = moment.astimezone(self.tz)
        return moment if start < moment <= self.cutoff(target) else start

    def as_of_for_instant(self, instant: dt.datetime) -> dt.date:
        """The as-of session whose label window ``(cutoff(d), cutoff(next)]`` holds ``instant``."""
        local = instant.astimezone(self.tz) if instant.tzinfo else instant.replace(tzinfo=self.tz)
        day = local.date()
        # The window ending at cutoff(t) belongs to the session before t.
        t = day if self.is_session(day) and local <= self.cutoff(day) else self.next_session(day)
        return self.previous_session(t)

    # ----------------------------------------------------------------- tables for SQL
    def session_table(self, start: dt.date | str, end: dt.date | str) -> pl.DataFrame:
        """One row per as-of session in ``[start, end]`` with every bound the SQL needs.

        Columns: as_of, target_date, previous_session, cutoff_utc, previous_cutoff_utc,
        target_cutoff_utc, after_close_utc, target_open_utc (all instants naive UTC),
        days_to_target, days_since_previous.
        """
        rows = []
        for d in self.sessions(start, end):
            prev, nxt = self.previous_session(d), self.next_session(d)
            rows.append(
                {
                    "as_of": d,
                    "target_date": nxt,
                    "previous_session": prev,
                    "cutoff_utc": self.cutoff_utc(d),
                    "previous_cutoff_utc": self.cutoff_utc(prev),
                    "target_cutoff_utc": self.cutoff_utc(nxt),
                    "after_close_utc": to_utc_naive(self.after_close_start(d)),
                    "target_open_utc": to_utc_naive(self.target_open(d)),
                    "days_to_target": (nxt - d).days,
                    "days_since_previous": (d - prev).days,
                }
            )
        schema = {
            "as_of": pl.Date,
            "target_date": pl.Date,
            "previous_session": pl.Date,
            "cutoff_utc": pl.Datetime("us"),
            "previous_cutoff_utc": pl.Datetime("us"),
            "target_cutoff_utc": pl.Datetime("us"),
            "after_close_utc": pl.Datetime("us"),
            "target_open_utc": pl.Datetime("us"),
            "days_to_target": pl.Int32,
            "days_since_previous": pl.Int32,
        }
        return pl.DataFrame(rows, schema=schema)

    def future_coverage_days(self, today: dt.date) -> int:
        """Calendar days the calendar still covers after ``today`` (negative once it ran out)."""
        return (self.last_day - today).days


def to_utc_naive(instant: dt.datetime) -> dt.datetime:
    """An aware instant as the naive UTC timestamp the warehouse stores."""
    if instant.tzinfo is None:
        raise ValueError("to_utc_naive needs an aware datetime")
    return instant.astimezone(dt.UTC).replace(tzinfo=None)


def parse_cutoff(text: str) -> dt.time:
    """``"18:00"`` -> ``time(18, 0)`` with a message a user can act on."""
    try:
        hours, minutes = str(text).strip().split(":")
        return dt.time(int(hours), int(minutes))
    except (ValueError, TypeError) as exc:
        raise DataError(f"cutoff must be HH:MM local time, got {text!r}") from exc


def read_calendar_overrides(path) -> dict[dt.date, bool]:
    """Read ``calendar.csv`` (``date,is_trading_day``) into a date -> bool mapping."""
    from features.source import SourceError, read_text_table

    frame = read_text_table(path, required=("date", "is_trading_day"))
    overrides: dict[dt.date, bool] = {}
    truthy, falsy = {"1", "true", "yes", "y", "t"}, {"0", "false", "no", "n", "f"}
    for row, (day, flag) in enumerate(
        zip(frame["date"].to_list(), frame["is_trading_day"].to_list(), strict=True), start=1
    ):
        try:
            date = dt.date.fromisoformat((day or "").strip())
        except ValueError:
            raise SourceError(f"{path.name} row {row}: date {day!r} is not YYYY-MM-DD") from None
        value = (flag or "").strip().lower()
        if value not in truthy | falsy:
            raise SourceError(
                f"{path.name} row {row}: is_trading_day {flag!r} must be 1/0 or true/false"
            )
        overrides[date] = value in truthy
    return overrides

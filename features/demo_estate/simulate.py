"""A day-by-day simulation of a securities firm's estate: its state, its changes, its incidents.

Failures come from mechanisms with genuine precursors in the data a model will see:

- capacity: disks fill at a system-specific rate; past ~94% writes start failing.
- leak: leaky releases grow memory until a restart; past ~93% the process falls over.
- latency: degradation episodes raise latency day after day until an SLA breach.
- storm: error bursts in the post-market hours announce a failure the next day.
- hardware: monitoring gaps, I/O wait and heat precede hardware faults.
- change: changes fail by their risk level and type, inside the change window.
- reopen: trading-facing systems fail more on the first session after a long break.
- cascade: a serious incident spreads to systems that depend on the failed one.
- exhaustion (off in the demo): connection pools fill over days until a restart empties them.

and from causes with no precursor at all (``random``), so a model can learn some, not all.
Their mix and strength, and the operations team's rhythm, come from a ``Profile``
(``features.demo_estate.profiles``). Everything is drawn from one seeded generator, in a fixed
order: same seed and profile, same estate.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from features.demo_estate.catalog import (
    CHANGE_TYPES,
    DATACENTERS,
    KINDS,
    MECHANISMS,
    PLATFORMS,
    RANDOM_CATEGORIES,
    TEXTS,
)
from features.demo_estate.profiles import Profile, profile
from features.trading_time import LONG_BREAK_DAYS, TradingCalendar

MINUTES = 1440


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Inventory:
    """The systems of the estate and their dependency graph."""

    ids: list[str]
    kinds: np.ndarray  # index into KINDS
    tiers: np.ndarray
    upstream: list[list[int]]
    downstream: list[list[int]]
    rows: list[dict]  # systems.csv rows

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Change:
    change_id: str
    system: int
    change_type: str
    risk_level: str
    start: dt.datetime
    end: dt.datetime
    created_at: dt.datetime
    status: str
    description: str


@dataclass
class Incident:
    system: int
    opened_at: dt.datetime
    mechanism: str
    severity: int
    upstream: int | None = None
    change: Change | None = None


@dataclass
class DayState:
    """What the metric synthesis of one calendar day needs to know."""

    date: dt.date
    trading: bool
    disk: tuple[np.ndarray, np.ndarray]  # level at the start and the end of the day
    mem: tuple[np.ndarray, np.ndarray]
    degradation: np.ndarray  # latency multiplier, 1 = healthy
    storm_from: np.ndarray  # minute of day an error burst starts, -1 = none
    hardware: np.ndarray  # bool: a hardware fault is developing
    gaps: list[tuple[int, int, int]] = field(default_factory=list)  # (system, from, to) minutes
    resend: tuple[int, int, int] | None = None  # a collector re-sent (system, from, to)
    pool: np.ndarray | None = None  # connection-pool fill 0..1 (None: the mechanism is off)


class EstateSimulator:
    """Simulates ``n_systems`` from ``start`` to ``end`` (calendar days, local time)."""

    def __init__(
        self,
        n_systems: int,
        start: dt.date,
        end: dt.date,
        calendar: TradingCalendar,
        seed: int = 7,
        mechanisms: str | Profile = "demo",
    ) -> None:
        if n_systems < 1:
            raise ValueError("an estate needs at least one system")
        self.start, self.end, self.calendar = start, end, calendar
        self.profile = profile(mechanisms)
        self.rng = np.random.default_rng(seed)
        self.inventory = self._build_inventory(n_systems)
        self.incidents: list[Incident] = []
        self.changes: list[Change] = []
        self._changes_on: dict[dt.date, list[Change]] = defaultdict(list)
        self._pending: dict[dt.date, list[Incident]] = defaultdict(list)
        self._next_change = 0
        self._init_state()
        self._plan_changes()

    # --------------------------------------------------------------------- inventory
    def _build_inventory(self, n: int) -> Inventory:
        rng = self.rng
        weights = np.array([k.weight for k in KINDS])
        counts = np.maximum(1, np.floor(weights / weights.sum() * n)).astype(int)
        # Tiny estates keep the foundations (network, storage, databases) and lose top layers.
        for k in sorted(range(len(KINDS)), key=lambda k: (-KINDS[k].layer, KINDS[k].weight)):
            if counts.sum() <= n:
                break
            counts[k] = 0
        while counts.sum() > n:
            counts[np.argmax(counts)] -= 1
        while counts.sum() < n:
            counts[rng.choice(len(KINDS), p=weights / weights.sum())] += 1
        kinds = np.repeat(np.arange(len(KINDS)), counts)
        ids, rows, tiers = [], [], []
        width = max(2, len(str(counts.max())))
        serial = defaultdict(int)
        for k in kinds:
            kind = KINDS[k]
            serial[k] += 1
            ids.append(f"{kind.prefix}-{serial[k]:0{width}d}")
            tiers.append(int(rng.choice(4, p=kind.tiers)) + 1)
        by_prefix = defaultdict(list)
        for i, k in enumerate(kinds):
            by_prefix[KINDS[k].prefix].append(i)
        upstream: list[list[int]] = []
        for i, k in enumerate(kinds):
            candidates = [j for p in KINDS[k].upstream for j in by_prefix.get(p, [])]
            take = min(len(candidates), int(rng.integers(1, 4)))
            picked = sorted(rng.choice(candidates, size=take, replace=False).tolist()) if take else []
            upstream.append([j for j in picked if j != i])
        downstream: list[list[int]] = [[] for _ in kinds]
        for i, ups in enumerate(upstream):
            for j in ups:
                downstream[j].append(i)
        span = (self.end - self.start).days
        for i, k in enumerate(kinds):
            kind = KINDS[k]
            # Most systems predate the data; a few arrive or retire inside it.
            active_from = self.start - dt.timedelta(days=int(rng.integers(200, 3000)))
            active_to = None
            roll = rng.random()
            if roll < 0.06 and span > 120:
                active_from = self.start + dt.timedelta(days=int(rng.integers(30, span // 2)))
            elif roll < 0.09 and span > 120:
                active_to = self.start + dt.timedelta(days=int(rng.integers(span // 2, span)))
            rows.append(
                {
                    "system_id": ids[i],
                    "name": f"{kind.name} {ids[i].split('-')[1]}",
                    "category": kind.category,
                    "owner": kind.owner,
                    "tier": tiers[i],
                    "depends_on": ";".join(ids[j] for j in upstream[i]),
                    "active_from": active_from.isoformat(),
                    "active_to": active_to.isoformat() if active_to else "",
                    "datacenter": DATACENTERS[int(rng.integers(len(DATACENTERS)))],
                    "platform": PLATFORMS[int(rng.integers(len(PLATFORMS)))],
                }
            )
        return Inventory(ids, kinds, np.array(tiers), upstream, downstream, rows)

    # --------------------------------------------------------------------- latent state
    def _init_state(self) -> None:
        rng, n = self.rng, len(self.inventory)
        kinds = [KINDS[k] for k in self.inventory.kinds]
        growth = np.array([k.disk_growth for k in kinds]) * self.profile.disk_growth
        self.disk_rate = growth * rng.lognormal(0.0, 0.6, n) * np.where(rng.random(n) < 0.15, 3, 1)
        self.disk_floor = rng.uniform(25, 50, n)
        self.disk = rng.uniform(self.disk_floor, 85)
        self.leaky = rng.random(n) < np.array([k.leak_prone for k in kinds]) * self.profile.leak_prone
        self.leak_rate = np.where(self.leaky, rng.uniform(0.8, 3.0, n), 0.0)
        self.mem_base = rng.uniform(35, 60, n)
        self.leak = np.where(self.leaky, rng.uniform(0, 25, n), 0.0)
        self.degradation = np.ones(n)
        self.degrading = np.zeros(n, bool)
        self.degrade_rate = rng.uniform(1.08, 1.25, n)
        self.storm_days = np.zeros(n, int)
        self.hardware_days = np.zeros(n, int)
        tier_hazard = np.array([0.0035, 0.0045, 0.0055, 0.006])[self.inventory.tiers - 1]
        self.base_hazard = tier_hazard * rng.lognormal(0.0, 0.5, n)
        self.trading_facing = np.array([k.trading_facing for k in kinds])
        self.exhausting = self.profile.exhaustion_onset > 0
        self.pool = np.zeros(n)
        self.pool_rate = np.zeros(n)

    # --------------------------------------------------------------------- changes
    def _new_change(self, system: int, change_type: str, start: dt.datetime, hours: float,
                    created: dt.datetime | None = None) -> Change:
        rng = self.rng
        template, odds = CHANGE_TYPES[change_type]
        risk = ("low", "medium", "high")[int(rng.choice(3, p=odds))]
        if created is None:
            # Most changes are raised days ahead; a few are emergencies raised hours before.
            if rng.random() < 0.08:
                created = start - dt.timedelta(hours=float(rng.uniform(1, 20)))
            else:
                created = start - dt.timedelta(days=float(rng.uniform(2, 14)))
        self._next_change += 1
        version = f"{rng.integers(1, 9)}.{rng.integers(0, 30)}.{rng.integers(0, 10)}"
        change = Change(
            change_id=f"CHG{self._next_change:07d}",
            system=system,
            change_type=change_type,
            risk_level=risk,
            start=start,
            end=start + dt.timedelta(hours=hours),
            created_at=created.replace(second=0, microsecond=0),
            status="planned",
            description=template.format(sys=self.inventory.ids[system], v=version),
        )
        self.changes.append(change)
        self._changes_on[start.date()].append(change)
        return change

    def _plan_changes(self) -> None:
        """The change calendar: weekend maintenance, evening releases and configuration."""
        rng, inv, ops = self.rng, self.inventory, self.profile
        horizon = self.end + dt.timedelta(days=14)
        day = self.start
        while day <= horizon:
            weekday = day.weekday()
            for s in range(len(inv)):
                kind = KINDS[inv.kinds[s]]
                if weekday == 5:  # Saturday maintenance window
                    if self.leaky[s] and rng.random() < ops.leaky_restart or rng.random() < 0.03:
                        self._weekend(s, "restart", day, 1.0)
                    if 7 < day.day <= 21 and rng.random() < 0.3:
                        self._weekend(s, "os_patch", day, 3.0)
                    if kind.prefix == "DB" and rng.random() < 0.4:
                        self._weekend(s, "db_maintenance", day, 4.0)
                    if kind.prefix == "NET" and rng.random() < 0.25:
                        self._weekend(s, "network", day, 2.0)
                    if rng.random() < 0.01:
                        self._weekend(s, "hardware", day, 3.0)
                elif weekday < 5 and self.calendar.is_session(day):
                    if rng.random() < ops.config_rate:
                        self._evening(s, "config", day, 1.0)
                    if kind.layer >= 2 and rng.random() < ops.release_rate:
                        self._evening(s, "release", day, 2.0)
            day += dt.timedelta(days=1)

    def _weekend(self, s: int, change_type: str, day: dt.date, hours: float) -> Change:
        hour = float(self.rng.uniform(8, 16))
        return self._new_change(s, change_type, _at(day, hour), hours)

    def _evening(self, s: int, change_type: str, day: dt.date, hours: float) -> Change:
        hour = float(self.rng.uniform(18.5, 22))
        return self._new_change(s, change_type, _at(day, hour), hours)

    # --------------------------------------------------------------------- the loop
    def days(self):
        """Simulate day by day, yielding the state each day's metrics are drawn from."""
        day = self.start
        previous_session = None
        while day <= self.end:
            trading = self.calendar.is_session(day)
            reopen = False
            if trading:
                reopen = previous_session is not None and (day - previous_session).days >= LONG_BREAK_DAYS
                previous_session = day
            yield self._step(day, trading, reopen)
            day += dt.timedelta(days=1)
        self._settle_changes()

    def _step(self, day: dt.date, trading: bool, reopen: bool) -> DayState:
        rng, n, mix = self.rng, len(self.inventory), self.profile
        disk0, mem0 = self.disk.copy(), self.mem_base + self.leak
        load = 1.0 if trading else 0.5
        incidents: list[Incident] = list(self._pending.pop(day, []))

        # Changes carried out today: maintenance resets state; some changes fail.
        for change in self._changes_on.get(day, []):
            if change.status == "planned" and rng.random() < 0.03:
                change.status = "cancelled"
                continue
            s = change.system
            if change.change_type in ("restart", "os_patch", "hardware", "release"):
                self.leak[s] = 0.0
                self.pool[s] = 0.0
            if change.change_type == "cleanup":
                self.disk[s] = self.disk_floor[s]
            if change.change_type in ("db_maintenance", "network", "hardware") and self.degrading[s]:
                self.degrading[s], self.degradation[s] = False, 1.0
            if change.change_type == "release" and rng.random() < mix.new_leak_on_release:
                # New code, new leak: the next weeks' memory curve tells the story.
                self.leaky[s], self.leak_rate[s] = True, float(rng.uniform(1.0, 3.0))
            p_fail = {"low": 0.015, "medium": 0.05, "high": 0.14}[change.risk_level]
            p_fail *= {"release": 1.5, "network": 1.3, "config": 1.2, "restart": 0.5}.get(
                change.change_type, 1.0) * mix.change
            if rng.random() < p_fail:
                at = change.start + dt.timedelta(
                    minutes=float(rng.uniform(5, 60 * (change.end - change.start).seconds / 3600 + 120)))
                incidents.append(Incident(s, at, "change", self._severity("change", s), change=change))

        # State drifts.
        self.disk = np.minimum(100.0, self.disk + self.disk_rate * load * rng.uniform(0.6, 1.4, n))
        self.leak = np.where(self.leaky, self.leak + self.leak_rate * load * rng.uniform(0.7, 1.3, n), 0)
        start_degrading = ~self.degrading & (rng.random(n) < mix.degradation_onset)
        self.degrading |= start_degrading
        self.degradation = np.where(self.degrading, self.degradation * self.degrade_rate, 1.0)
        recover = self.degrading & (rng.random(n) < 0.05)
        self.degrading &= ~recover
        self.degradation[recover] = 1.0
        new_storm = (self.storm_days == 0) & (rng.random(n) < mix.storm_onset)
        self.storm_days = np.where(new_storm, 3, np.maximum(self.storm_days - 1, 0))
        new_hw = (self.hardware_days == 0) & (rng.random(n) < mix.hardware_onset)
        self.hardware_days = np.where(new_hw, 5, np.maximum(self.hardware_days - 1, 0))
        mem1 = np.minimum(99.0, self.mem_base + self.leak)
        if self.exhausting:  # drawn only when on, so the demo's draws are unchanged
            start = (self.pool_rate == 0) & (rng.random(n) < mix.exhaustion_onset)
            self.pool_rate = np.where(start, rng.uniform(0.06, 0.2, n), self.pool_rate)
            self.pool = np.minimum(1.0, self.pool + self.pool_rate * load * rng.uniform(0.7, 1.3, n))

        # Ops react to a filling disk by scheduling a cleanup for the weekend.
        for s in np.flatnonzero((self.disk > 85) & (rng.random(n) < mix.cleanup_reaction)):
            saturday = day + dt.timedelta(days=(5 - day.weekday()) % 7 or 7)
            if not any(c.change_type == "cleanup" and c.system == s for c in self._changes_on[saturday]):
                self._new_change(int(s), "cleanup", _at(saturday, float(rng.uniform(9, 12))), 2.0,
                                 created=_at(day, float(rng.uniform(9, 23))))

        # Hazards of the day, one draw per mechanism.
        hazards = {
            "capacity": 0.5 * _sigmoid((self.disk - 95.0) / 1.0),
            "leak": 0.5 * _sigmoid((mem1 - 94.0) / 1.2),
            "latency": 0.35 * np.clip((self.degradation - 1.6) / 1.5, 0, 1),
            "storm": np.where(self.storm_days == 2, 0.45, np.where(self.storm_days == 1, 0.25, 0.0)),
            "hardware": np.where(self.hardware_days > 0, 0.3, 0.0) * (self.hardware_days < 5),
            "reopen": np.where(self.trading_facing & reopen, 0.12, 0.0),
            "random": self.base_hazard * (1.3 if trading else 0.6),
        }
        if self.exhausting:
            hazards["exhaustion"] = 0.45 * _sigmoid((self.pool - 0.92) / 0.03)
        for mechanism, p in hazards.items():
            p = np.minimum(1.0, p * mix.strength(mechanism))
            for s in np.flatnonzero(rng.random(n) < p):
                at = self._incident_time(day, int(s), mechanism, trading)
                incidents.append(Incident(int(s), at, mechanism, self._severity(mechanism, int(s))))

        incidents.sort(key=lambda i: i.opened_at)
        for incident in incidents:
            self._record(incident, day)

        gaps = []
        for s in np.flatnonzero(self.hardware_days > 0):
            for _ in range(int(rng.integers(1, 4))):
                begin = int(rng.integers(0, MINUTES - 60))
                gaps.append((int(s), begin, begin + int(rng.integers(10, 60))))
        for s in np.flatnonzero(rng.random(n) < 0.004):  # agents restart for no reason too
            begin = int(rng.integers(0, MINUTES - 90))
            gaps.append((int(s), begin, begin + int(rng.integers(10, 90))))
        resend = None
        if rng.random() < 0.01:
            begin = int(rng.integers(0, MINUTES - 30))
            resend = (int(rng.integers(n)), begin, begin + 20)
        storm_from = np.where(self.storm_days == 3, rng.integers(900, 1000, n), -1)
        return DayState(
            date=day,
            trading=trading,
            disk=(disk0, self.disk.copy()),
            mem=(np.minimum(99.0, mem0), mem1),
            degradation=self.degradation.copy(),
            storm_from=storm_from,
            hardware=self.hardware_days > 0,
            gaps=gaps,
            resend=resend,
            pool=self.pool.copy() if self.exhausting else None,
        )

    def _incident_time(self, day: dt.date, s: int, mechanism: str, trading: bool) -> dt.datetime:
        rng = self.rng
        if mechanism in ("capacity", "leak", "latency", "reopen", "exhaustion") and trading:
            hour = float(rng.choice([rng.uniform(9.25, 11.5), rng.uniform(13.0, 15.0)]))
        elif mechanism == "storm":
            hour = float(rng.uniform(9.0, 17.0))
        else:
            hour = float(rng.uniform(0, 24))
        return _at(day, hour)

    def _severity(self, mechanism: str, s: int) -> int:
        odds = MECHANISMS[mechanism][1]
        severity = int(self.rng.choice(4, p=odds)) + 1
        if self.inventory.tiers[s] == 1 and severity > 1 and self.rng.random() < 0.3:
            severity -= 1
        return severity

    def _record(self, incident: Incident, day: dt.date) -> None:
        """Keep an incident, repair what failed, and let it spread downstream."""
        rng, s = self.rng, incident.system
        self.incidents.append(incident)
        match incident.mechanism:
            case "capacity":
                self.disk[s] = self.disk_floor[s] + rng.uniform(0, 10)
            case "leak":
                self.leak[s] = 0.0
                if rng.random() < 0.5:  # the hotfix shipped
                    self.leaky[s] = False
            case "latency":
                self.degrading[s], self.degradation[s] = False, 1.0
            case "storm":
                self.storm_days[s] = 0
            case "hardware":
                self.hardware_days[s] = 0
            case "exhaustion":
                self.pool[s] = 0.0
                if rng.random() < 0.6:  # the connection leak was found and fixed
                    self.pool_rate[s] = 0.0
        if incident.change is not None:
            incident.change.status = "rolled_back" if rng.random() < 0.5 else "failed"
        spread = min(1.0, {1: 0.35, 2: 0.35, 3: 0.12}.get(incident.severity, 0.0)
                     * self.profile.cascade)
        for d in self.inventory.downstream[s]:
            if rng.random() < spread:
                at = incident.opened_at + dt.timedelta(hours=0.5 + float(rng.exponential(10)))
                follow = Incident(d, at, "cascade", self._severity("cascade", d), upstream=s)
                if at.date() == day:
                    self.incidents.append(follow)  # same day: recorded now, no further spread
                else:
                    self._pending[at.date()].append(follow)

    def _settle_changes(self) -> None:
        """Past changes were implemented; future ones are still waiting for approval."""
        end = _at(self.end, 24)
        for change in self.changes:
            if change.status == "planned":
                if change.start < end:
                    change.status = "implemented"
                else:
                    change.status = "approved" if self.rng.random() < 0.6 else "planned"

    # --------------------------------------------------------------------- records
    def incident_rows(self, until: dt.datetime) -> list[dict]:
        """The case library as the operations team wrote it, opened before ``until``."""
        rng, inv = self.rng, self.inventory
        rows = []
        durations = {1: 240, 2: 120, 3: 60, 4: 30}
        incidents = sorted((i for i in self.incidents if i.opened_at < until), key=lambda i: i.opened_at)
        for number, inc in enumerate(incidents, start=1):
            kind = KINDS[inv.kinds[inc.system]]
            title, cause, fix = TEXTS[inc.mechanism][int(rng.integers(len(TEXTS[inc.mechanism])))]
            values = {
                "sys": inv.ids[inc.system],
                "name": kind.name,
                "chg": inc.change.change_id if inc.change else "",
                "up": inv.ids[inc.upstream] if inc.upstream is not None else "",
                "v": f"{rng.integers(1, 9)}.{rng.integers(0, 30)}",
            }
            category = MECHANISMS[inc.mechanism][0] or RANDOM_CATEGORIES[
                int(rng.integers(len(RANDOM_CATEGORIES)))]
            minutes = durations[inc.severity] * float(rng.lognormal(0, 0.6))
            resolved = inc.opened_at + dt.timedelta(minutes=minutes)
            rows.append(
                {
                    "incident_id": f"INC{inc.opened_at.year}-{number:06d}",
                    "system_id": inv.ids[inc.system],
                    "opened_at": _iso(inc.opened_at),
                    "resolved_at": _iso(resolved) if resolved < until else "",
                    "severity": inc.severity,
                    "category": category,
                    "title": f"[P{inc.severity}] " + title.format(**values),
                    "root_cause": cause.format(**values),
                    "remediation": fix.format(**values),
                }
            )
        return rows

    def change_rows(self, until: dt.datetime) -> list[dict]:
        """Changes raised before ``until`` (the ones a firm's change calendar holds by then)."""
        inv = self.inventory
        return [
            {
                "change_id": c.change_id,
                "system_id": inv.ids[c.system],
                "scheduled_start": _iso(c.start),
                "scheduled_end": _iso(c.end),
                "created_at": _iso(c.created_at),
                "change_type": c.change_type,
                "risk_level": c.risk_level,
                "status": c.status,
                "description": c.description,
            }
            for c in sorted(self.changes, key=lambda c: (c.start, c.change_id))
            if c.created_at < until
        ]


def _at(day: dt.date, hour: float) -> dt.datetime:
    minutes = int(round(hour * 60))
    return dt.datetime.combine(day, dt.time()) + dt.timedelta(minutes=minutes)


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")



"""Minute-level metrics of one simulated day, drawn with numpy in one vectorised pass.

Every metric of every system is a function of the day's load shape (trading sessions, the
post-market batch, client hours) and of the latent state the simulation carries (disk fill,
memory leak, latency degradation, error storms, failing hardware), plus noise. Rows come out
ordered by timestamp, then system, then metric, as a collector would ship them.
"""

from __future__ import annotations

import datetime as dt
from functools import cache

import numpy as np
import pyarrow as pa

from features.demo_estate.catalog import KINDS, LOAD_SHAPES
from features.demo_estate.simulate import MINUTES, DayState, Inventory


def _bump(minutes: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((minutes - centre) / width) ** 2)


def _window(minutes: np.ndarray, start: float, end: float, ramp: float = 10.0) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(minutes - start) / ramp)) - 1.0 / (1.0 + np.exp(-(minutes - end) / ramp))


@cache
def load_shapes() -> dict[bool, np.ndarray]:
    """Load per minute of the day, for each shape, on trading (True) and other days."""
    m = np.arange(MINUTES, dtype=float)
    h = 60.0
    morning = _window(m, 9.5 * h, 11.5 * h, 3)
    afternoon = _window(m, 13 * h, 15 * h, 3)
    auction = _bump(m, 9.35 * h, 8)
    trading = 0.12 + 0.65 * (morning + afternoon) + 0.3 * auction + 0.25 * _bump(m, 9.6 * h, 15) \
        + 0.2 * _bump(m, 14.9 * h, 6) + 0.25 * _window(m, 8.5 * h, 9.3 * h, 10)
    post_trade = 0.2 + 0.25 * (morning + afternoon) + 0.75 * _window(m, 15.5 * h, 20 * h, 15) \
        + 0.5 * _window(m, 1 * h, 4 * h, 15)
    client = 0.1 + 0.35 * _window(m, 7 * h, 23 * h, 30) + 0.45 * (morning + afternoon)
    infra = 0.3 + 0.4 * (morning + afternoon) + 0.3 * _window(m, 15.5 * h, 20 * h, 15)
    quiet = {
        "trading": 0.1 + 0.05 * _window(m, 10 * h, 16 * h, 30),
        "post_trade": 0.15 + 0.3 * _window(m, 1 * h, 4 * h, 15),
        "client": 0.08 + 0.15 * _window(m, 8 * h, 22 * h, 30),
        "infra": 0.25 + 0.05 * _window(m, 1 * h, 4 * h, 15),
    }
    busy = {"trading": trading, "post_trade": post_trade, "client": client, "infra": infra}
    return {
        True: np.stack([busy[s] for s in LOAD_SHAPES]),
        False: np.stack([quiet[s] for s in LOAD_SHAPES]),
    }


class MetricModel:
    """Per-system constants of each metric and the day-to-table synthesis."""

    def __init__(self, inventory: Inventory, metrics: tuple[str, ...], minutes_per_sample: int,
                 seed: int) -> None:
        if MINUTES % minutes_per_sample:
            raise ValueError(f"minutes per sample must divide 1440, got {minutes_per_sample}")
        self.inventory, self.metrics, self.step = inventory, metrics, minutes_per_sample
        self.seed = seed
        rng = np.random.default_rng([seed, 1])
        n = len(inventory)
        self.shape = np.array([LOAD_SHAPES.index(KINDS[k].load) for k in inventory.kinds])
        self.scale = rng.uniform(0.7, 1.3, n)
        self.p = {
            "cpu": rng.uniform(5, 25, n), "cpu_amp": rng.uniform(20, 55, n),
            "lat": rng.lognormal(np.log(8), 0.8, n), "err": rng.lognormal(np.log(0.3), 0.7, n),
            "tp": rng.lognormal(np.log(2000), 1.0, n), "queue": rng.lognormal(np.log(20), 0.6, n),
            "conn": rng.uniform(50, 2000, n), "gc": rng.lognormal(np.log(15), 0.4, n),
            "io": rng.uniform(0.5, 4, n), "net": rng.lognormal(np.log(40), 0.8, n),
            "threads": rng.uniform(80, 600, n), "retrans": rng.uniform(0.01, 0.2, n),
            "locks": rng.uniform(0.5, 5, n), "lag": rng.lognormal(np.log(30), 0.6, n),
            "temp": rng.uniform(40, 55, n),
        }
        self.active_from = np.array(
            [dt.date.fromisoformat(r["active_from"]) for r in inventory.rows], dtype="datetime64[D]")
        self.active_to = np.array(
            [dt.date.fromisoformat(r["active_to"]) if r["active_to"] else dt.date.max
             for r in inventory.rows], dtype="datetime64[D]")
        self.system_ids = pa.array(inventory.ids, pa.string())
        self.metric_ids = pa.array(list(metrics), pa.string())

    def _values(self, state: DayState, grid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(samples, systems, metrics) float32 values for the minutes in ``grid``."""
        n, t, p = len(self.inventory), len(grid), self.p
        load = load_shapes()[state.trading][self.shape][:, grid] * self.scale[:, None]
        load *= rng.normal(1.0, 0.05, (n, 1))
        frac = (grid / MINUTES)[None, :]
        disk = state.disk[0][:, None] + (state.disk[1] - state.disk[0])[:, None] * frac
        mem = state.mem[0][:, None] + (state.mem[1] - state.mem[0])[:, None] * frac
        degr = state.degradation[:, None]
        hw = state.hardware[:, None].astype(float)
        storm_from = state.storm_from[:, None]
        storm = ((grid[None, :] >= storm_from) & (grid[None, :] < storm_from + 150) & (storm_from >= 0))
        pressure = np.clip((mem - 75.0) / 25.0, 0, 1) ** 2
        # Connection-pool fill (a mechanism some profiles switch on): more connections and threads.
        pool = state.pool[:, None] if state.pool is not None else 0.0

        def noise(scale: float = 1.0) -> np.ndarray:
            return rng.standard_normal((n, t), dtype=np.float32) * scale

        formulas = {
            "cpu_pct": lambda: np.clip(p["cpu"][:, None] + p["cpu_amp"][:, None] * load
                                       + 6 * (degr - 1) + 10 * pressure + noise(3), 0, 100),
            "mem_pct": lambda: np.clip(mem + 2 * load + noise(0.4), 0, 100),
            "disk_pct": lambda: np.clip(disk + noise(0.05), 0, 100),
            "latency_ms": lambda: p["lat"][:, None] * (1 + 0.8 * load) * degr * (1 + 2 * pressure)
            * np.exp(noise(0.12)),
            "error_rate": lambda: p["err"][:, None] * (1 + load) * (1 + 0.5 * (degr - 1))
            * np.exp(noise(0.3)) * (1 + 40 * storm),
            "throughput": lambda: p["tp"][:, None] * load / degr ** 0.3 * np.exp(noise(0.05)),
            "queue_depth": lambda: p["queue"][:, None] * load * degr ** 2 * np.exp(noise(0.2))
            * (1 + 5 * storm),
            "conn_count": lambda: p["conn"][:, None] * (0.3 + load) * np.exp(noise(0.03))
            * (1 + 1.5 * pool),
            "gc_pause_ms": lambda: p["gc"][:, None] * (1 + 8 * pressure) * np.exp(noise(0.25)),
            "io_wait_pct": lambda: np.clip(p["io"][:, None] + 3 * load + 9 * hw + noise(0.6), 0, 100),
            "net_in_mbps": lambda: p["net"][:, None] * (0.1 + load) * np.exp(noise(0.1)),
            "net_out_mbps": lambda: p["net"][:, None] * 0.7 * (0.1 + load) * np.exp(noise(0.1)),
            "thread_count": lambda: p["threads"][:, None] * (0.6 + 0.4 * load) * (1 + pressure)
            * (1 + 0.8 * pool) + noise(3),
            "heap_pct": lambda: np.clip(mem + 4 + noise(1.5), 0, 100),
            "swap_pct": lambda: np.clip(3 * np.maximum(mem - 80, 0) + noise(0.3), 0, 100),
            "tcp_retrans_pct": lambda: np.abs(p["retrans"][:, None] * (1 + degr - 1) + 1.5 * hw
                                              + noise(0.02)),
            "db_lock_waits": lambda: np.abs(p["locks"][:, None] * load * degr ** 2 + noise(0.5)),
            "msg_lag_ms": lambda: p["lag"][:, None] * (1 + load) * degr * (1 + 20 * storm)
            * np.exp(noise(0.2)),
            "fd_used_pct": lambda: np.clip(10 + 0.6 * (mem - 35) + noise(0.5), 0, 100),
            "cpu_temp_c": lambda: p["temp"][:, None] + 12 * load + 14 * hw + noise(0.8),
        }
        values = np.empty((t, n, len(self.metrics)), dtype=np.float32)
        for j, metric in enumerate(self.metrics):
            values[:, :, j] = formulas[metric]().T
        return values

    def day_table(self, state: DayState, minute_from: int = 0, minute_to: int = MINUTES) -> pa.Table:
        """The samples of ``state.date`` with minute of day in ``[minute_from, minute_to)``."""
        rng = np.random.default_rng([self.seed, 2, state.date.toordinal()])
        grid = np.arange(0, MINUTES, self.step)
        grid = grid[(grid >= minute_from) & (grid < minute_to)]
        n, m = len(self.inventory), len(self.metrics)
        if not len(grid):
            return self._table(np.empty(0, "datetime64[us]"), np.empty(0, np.int32),
                               np.empty(0, np.int32), np.empty(0, np.float32))
        values = self._values(state, grid, rng)
        keep = np.ones((len(grid), n), dtype=bool)
        day = np.datetime64(state.date, "D")
        keep[:, (day < self.active_from) | (day > self.active_to)] = False
        for s, begin, end in state.gaps:
            keep[(grid >= begin) & (grid < end), s] = False
        keep = np.repeat(keep[:, :, None], m, axis=2)
        keep &= rng.random(keep.shape, dtype=np.float32) > 2e-4
        values[rng.random(values.shape, dtype=np.float32) < 2e-4] = np.nan
        flat = np.flatnonzero(keep.ravel())
        per_step = n * m
        step_index, rest = np.divmod(flat, per_step)
        system_index, metric_index = np.divmod(rest, m)
        midnight = np.datetime64(state.date, "us")
        ts = midnight + (grid[step_index] * 60_000_000).astype("timedelta64[us]")
        vals = values.ravel()[flat]
        if state.resend is not None:  # a collector delivered a batch twice
            s, begin, end = state.resend
            again = (system_index == s) & (grid[step_index] >= begin) & (grid[step_index] < end)
            ts = np.concatenate([ts, ts[again]])
            vals = np.concatenate([vals, vals[again]])
            system_index = np.concatenate([system_index, system_index[again]])
            metric_index = np.concatenate([metric_index, metric_index[again]])
        return self._table(ts, system_index.astype(np.int32), metric_index.astype(np.int32), vals)

    def _table(self, ts, system_index, metric_index, values) -> pa.Table:
        return pa.table(
            {
                "ts": pa.array(ts, pa.timestamp("us")),
                "system_id": pa.DictionaryArray.from_arrays(pa.array(system_index), self.system_ids),
                "metric": pa.DictionaryArray.from_arrays(pa.array(metric_index), self.metric_ids),
                "value": pa.array(values, pa.float32()),
            }
        )

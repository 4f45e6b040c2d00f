"""How a retrain's training set travels from ``training_set`` to ``failure_model``.

Each materialization writes a folder of its own, ``<home>/training_sets/<as_of>_<run id>/``
(the train, hold-out and refit rows as Parquet, their windows as JSON), renamed into place
whole; the folder's name is recorded in the materialization's metadata. ``failure_model``
reads the folder of its own run when ``training_set`` ran in it, otherwise the one the latest
materialization recorded. So two retrains at once never read each other's rows, and every
registered model names the training set it came from (tag ``training_set``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import dagster as dg
import polars as pl

from features.errors import DataError
from models.dataset import Window
from models.lifecycle import TrainingSet

FRAMES = ("train", "holdout", "refit")
DESCRIPTION = "training_set.json"
KEEP_NEWEST = 8  # older folders are removed when a new one is written


class TrainingSetIOManager(dg.ConfigurableIOManager):
    base_dir: str

    def handle_output(self, context: dg.OutputContext, obj: TrainingSet) -> None:
        base = Path(self.base_dir)
        folder = base / f"{obj.as_of}_{context.run_id}"
        partial = base / f".{folder.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for name in FRAMES:
            getattr(obj, name).write_parquet(partial / f"{name}.parquet")
        (partial / DESCRIPTION).write_text(json.dumps({
            "as_of": str(obj.as_of),
            **{f"{name}_window": [str(w.first), str(w.last)] for name, w in (
                ("train", obj.train_window), ("holdout", obj.holdout_window),
                ("refit", obj.refit_window))},
        }, indent=1))
        os.replace(partial, folder)
        _prune(base, keep=folder)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(folder)),
                                     "training_set": folder.name})

    def load_input(self, context: dg.InputContext) -> TrainingSet:
        folder = self._folder(context)
        if folder is None or not (folder / DESCRIPTION).exists():
            raise DataError(
                f"no training set at {folder or self.base_dir}: materialize training_set first "
                "(the retrain job does both)")
        meta = json.loads((folder / DESCRIPTION).read_text())

        def window(name: str) -> Window:
            first, last = meta[f"{name}_window"]
            return Window(dt.date.fromisoformat(first), dt.date.fromisoformat(last))

        return TrainingSet(
            dt.date.fromisoformat(meta["as_of"]),
            *(pl.read_parquet(folder / f"{name}.parquet") for name in FRAMES),
            window("train"), window("holdout"), window("refit"),
            origin=folder.name,
        )

    def _folder(self, context: dg.InputContext) -> Path | None:
        base = Path(self.base_dir)
        run_id = context.step_context.run_id if context.step_context else None
        if run_id:
            mine = sorted(base.glob(f"*_{run_id}"))
            if mine:
                return mine[-1]
        event = context.instance.get_latest_materialization_event(context.asset_key)
        if event is None or event.asset_materialization is None:
            return None
        path = event.asset_materialization.metadata.get("path")
        return Path(path.value) if path is not None else None


def _prune(base: Path, keep: Path) -> None:
    """Remove all but the newest ``KEEP_NEWEST`` training sets (by modification time)."""
    folders = sorted((p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for old in folders[KEEP_NEWEST:]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)

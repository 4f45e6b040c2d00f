"""The what-if walk-forward's settings and its comparison with the recent rate."""

import polars as pl
import pytest

from benchmarks.walk_monthly import _setting, summary


def test_settings_are_typed_and_unknown_ones_named():
    assert _setting("num_leaves=31") == ("num_leaves", 31)
    assert _setting("blend_recent_rate=false") == ("blend_recent_rate", False)
    with pytest.raises(Exception, match="unknown setting 'leaves'"):
        _setting("leaves=3")


def test_the_ratio_is_the_models_pr_auc_over_the_rates():
    scores = pl.DataFrame({"label": [True, False, False, True], "risk": [0.9, 0.1, 0.2, 0.8],
                           "recent": [0.1, 0.9, 0.2, 0.8]})
    result = summary(scores)
    assert result["risk"]["pr_auc"] == 1.0
    assert result["ratio"] == pytest.approx(1.0 / result["recent"]["pr_auc"])

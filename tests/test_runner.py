"""A failed run says why in one line, with the exit code its failure deserves."""

import dagster as dg
import pytest

from features.errors import DataError, ResourceError
from pipelines.runner import run_failure


@dg.asset(check_specs=[dg.AssetCheckSpec("feeds_fresh", asset="ingested", blocking=True)])
def ingested():
    yield dg.MaterializeResult()
    yield dg.AssetCheckResult(check_name="feeds_fresh", passed=False,
                              description="metrics end 2026-09-24 17:59 Asia/Shanghai")


@dg.asset(deps=[ingested])
def published():
    return None


def _raising(exc):
    @dg.asset(name="step")
    def step():
        raise exc
    return step


def _run(assets, selection):
    defs = dg.Definitions(assets=assets, jobs=[dg.define_asset_job("job", selection=selection)])
    result = defs.resolve_job_def("job").execute_in_process(
        raise_on_error=False, instance=dg.DagsterInstance.ephemeral())
    assert not result.success
    return run_failure("job", result)


def test_a_refusing_check_names_itself_and_its_reason_with_exit_2():
    failure = _run([ingested, published], [ingested, published])
    assert failure.exit_code == 2
    assert str(failure) == ("job refused by the check feeds_fresh of ingested: metrics end "
                            "2026-09-24 17:59 Asia/Shanghai")


@pytest.mark.parametrize(("exc", "code"), [
    (ResourceError("MLflow at http://127.0.0.1:5999 is unreachable"), 3),
    (DataError("no features for 2026-11-16"), 2),
])
def test_a_step_that_raises_a_failcast_error_keeps_its_message_and_exit_code(exc, code):
    failure = _run([_raising(exc)], "*")
    assert failure.exit_code == code
    assert str(failure) == f"job failed at step: {exc}"


def test_any_other_error_in_a_step_is_a_bug():
    failure = _run([_raising(ZeroDivisionError("division by zero"))], "*")
    assert failure.exit_code == 1
    assert str(failure).startswith("job failed at step: ZeroDivisionError: division by zero (a bug")

"""The suite's own scheduling: tests that share an expensive module fixture (the production
servers, the backfills, a trained home) are one ``xdist_group`` so that one worker builds it
once. pytest 9.2 with pytest-xdist 3.8 dropped the groups without a word and both workers built
everything twice (pytest-dev/pytest-xdist#1386); this fails when the groups are lost again."""

import pytest

pytestmark = pytest.mark.xdist_group("suite_groups")


def test_a_grouped_test_is_scheduled_with_its_group(request):
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not run by `make test` (pytest-xdist --dist loadgroup)")
    assert request.node.nodeid.endswith("@suite_groups"), (
        f"{request.node.nodeid}: the xdist_group suffix is gone, so grouped tests are spread "
        "over the workers and their module fixtures are built once per worker")

"""A registered backend without a contract harness fails the suite, saying which backend and where a harness goes."""

from __future__ import annotations

from pathlib import Path

import pytest
from contract_harness import open_harness


def test_a_backend_without_a_harness_fails_naming_it_and_the_conftest(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with pytest.raises(pytest.fail.Exception) as err:
        next(open_harness("tiktok", "", {}, request, tmp_path))
    message = str(err.value)
    assert "'tiktok'" in message and "@platform_harness('tiktok')" in message
    assert "tests/contract/conftest.py" in message  # a module nobody imports registers nothing

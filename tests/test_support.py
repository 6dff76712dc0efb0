"""The shared test helpers' own rules: one answer to "are we in CI", one deadline scale factor."""

from __future__ import annotations

import time

import pytest

from tests.support import in_ci, scaled, skip_or_fail, timeout_scale, wait_until


@pytest.mark.parametrize("value", ["true", "TRUE", "True", "1", "yes", "Yes", " true "])
def test_ci_is_true_1_or_yes(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci()
    with pytest.raises(pytest.fail.Exception, match="missing widget"):
        skip_or_fail("missing widget")


@pytest.mark.parametrize("value", [None, "", "false", "0", "no", "off"])
def test_anything_else_is_not_ci_and_a_missing_tool_skips(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert not in_ci()
    with pytest.raises(pytest.skip.Exception, match="missing widget"):
        skip_or_fail("missing widget")


def test_the_timeout_scale_defaults_to_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOOKLINE_TEST_TIMEOUT_SCALE", raising=False)
    assert timeout_scale() == 1 and scaled(60) == 60
    monkeypatch.setenv("HOOKLINE_TEST_TIMEOUT_SCALE", "")
    assert timeout_scale() == 1


def test_the_timeout_scale_stretches_every_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKLINE_TEST_TIMEOUT_SCALE", "2.5")
    assert timeout_scale() == 2.5 and scaled(60) == 150
    with pytest.raises(AssertionError, match=r"timed out after 0\.05s waiting for never"):
        wait_until(lambda: False, 0.02, "never", interval=0.001)
    # A condition that takes longer than the bare deadline still makes it within the scaled one.
    monkeypatch.setenv("HOOKLINE_TEST_TIMEOUT_SCALE", "1000")
    ready_at = time.monotonic() + 0.2
    assert wait_until(lambda: time.monotonic() >= ready_at, 0.01, "later", interval=0.01)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "inf", "nan"])
def test_a_bad_timeout_scale_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("HOOKLINE_TEST_TIMEOUT_SCALE", value)
    with pytest.raises(ValueError, match="HOOKLINE_TEST_TIMEOUT_SCALE"):
        timeout_scale()

"""`bakemon demo` runs end to end, unattended, and ends with the expected verdicts."""

from __future__ import annotations

import pytest

from monitor.cli.main import main


@pytest.mark.parametrize("scenario", ["errors", "slow-tail"])
def test_demo_reaches_the_expected_verdicts(
    scenario: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo exits 0 with HALT for the regressed canary and PROMOTE for the healthy one."""
    code = main(["demo", "--scenario", scenario, "--port", "0", "--timeout", "150"])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    assert "checkout-v42: HALT (as expected)" in out
    assert "search-v8: PROMOTE (as expected)" in out
    assert "/v1/bakes/checkout-v42" in out  # the verdict URLs are printed
    assert "PENDING" in out  # progress was shown while it ran

"""Test-wide set-up.

The whole test process runs inside the sandbox's private network, entered here before
any thread starts (a network namespace is per thread; threads inherit it from the one
that starts them). Nothing a test does can then reach the real AWS or the internet.
On a host where that is refused, the tests that start a Sandbox fail with the reason
(they never skip); the others still run.
"""

from __future__ import annotations

import pytest

from labkit.sandbox import enter_isolated_network_for_tests


def pytest_configure(config: pytest.Config) -> None:
    enter_isolated_network_for_tests()

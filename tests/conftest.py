"""Shared fixtures: a real emulated tenant over TLS on loopback, and configs pointing at it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.helpers.config import SECRET

# Fixtures every test may use without importing them.
pytest_plugins = ["tests.helpers.emulator", "tests.helpers.postgres", "tests.helpers.api"]

if TYPE_CHECKING:
    from entragate.emulator import AppRegistration, Emulator

@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    from entragate.emulator import Emulator

    emu = Emulator(state_dir=tmp_path_factory.mktemp("emulator"), rate_limit=None)
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
def emu(emulator: Emulator) -> Iterator[Emulator]:
    """The shared emulator, with faults, TLS scenario and throttling reset after each test."""
    yield emulator
    emulator.clear_faults()
    emulator.set_tls_scenario(None)
    emulator.date_offset_seconds = 0
    emulator.rate_limit = None
    emulator.read_lag_seconds = 0.0  # a test's lag would make the next test's writes look unapplied
    emulator.page_size = 100
    emulator.keep_deleted = True


@pytest.fixture
def app(emu: Emulator) -> AppRegistration:
    tenant = emu.add_tenant()
    return emu.add_app(tenant, secret=SECRET)

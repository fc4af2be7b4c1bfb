"""Every backend passes the same test functions: the ``world`` fixture is each in turn."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chain.dev_world import DevWorld


@pytest.fixture(params=["devchain", "evm", "anvil"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "devchain":
        w = DevWorld(tmp_path)
        yield w
        w.close()
    elif request.param == "anvil":  # a real JSON-RPC node
        from tests.chain.anvil_world import AnvilWorld

        w = AnvilWorld()  # scripts/install.sh installs anvil; without it this fails
        yield w
        w.close()
    else:
        from tests.chain.evm_world import EvmWorld

        yield EvmWorld()

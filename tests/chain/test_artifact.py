"""The committed contract artifact (p2pnode/chain/contracts/RewardAnchor.json) is what the
pinned compiler makes of the committed source: a fresh build equals it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from p2pnode.chain.evm import ARTIFACT, artifact

ROOT = Path(__file__).resolve().parents[2]


def test_the_artifact_is_a_fresh_build_of_the_source(tmp_path: Path) -> None:
    assert shutil.which("node") and shutil.which("npm"), \
        "node and npm are needed to build the contract (scripts/install.sh checks for them)"
    out = tmp_path / "RewardAnchor.json"
    subprocess.run(["bash", str(ROOT / "scripts" / "build-contract.sh"), str(out)],
                   check=True, timeout=600)
    fresh = json.loads(out.read_text(encoding="utf-8"))
    committed = artifact()
    assert fresh["abi"] == committed["abi"]
    assert fresh["bytecode"] == committed["bytecode"]
    assert (fresh["compiler"], fresh["settings"]) == (committed["compiler"],
                                                      committed["settings"])
    assert out.read_bytes() == ARTIFACT.read_bytes()  # byte for byte: the build is stable
    assert committed["settings"]["evmVersion"] == "cancun"
    assert committed["compiler"].startswith("0.8.28+")

"""The spec is internally consistent and agrees with the code and the vectors:
rule ids, reason codes, parameter values, cross-references."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from conformance import runner
from conformance.cases import all_cases
from p2pnode.wire.reasons import Reason

SPEC = Path(__file__).resolve().parents[2] / "spec"
CHAPTERS = sorted(SPEC.glob("*.md"))
PREFIXES = ("ID", "ENC", "ENV", "FRM", "CAPS", "TBL", "PUB", "RL", "NET", "JOB", "DHT", "OFR",
            "LEASE", "XCH", "WRK", "VER", "MAT", "EXE", "BLOB", "KAD", "ADDR", "PEER", "SYNC",
            "PRF", "FRD", "WSM", "DSP", "RCP", "CHL", "LGR", "RCN", "ANC", "CLM", "BND")
RULE_DEF = re.compile(r"^- \*\*([A-Z]+-\d+)\*\*", re.M)
RULE_REF = re.compile(r"\b(%s)-(\d+)\b" % "|".join(PREFIXES))

# Rules about behaviour a vector cannot show: the libp2p host, key files, publishing,
# memory bounds, the network stack, what a node sends and stores, timing and load, the
# runtime of executions. Those of spec 04 are exactly the ones its §1.3 names.
NOT_BY_VECTORS_04 = {"JOB-5", "XCH-1", "XCH-12", "EXE-9"}
# Those of spec 07 are the ones its §1.1 names: when a root is fixed, durability, the topic,
# the store's bounds, whom a node reconciles with, the transfer of the elements, the stream.
NOT_BY_VECTORS_07 = {"LGR-11", "LGR-15", "LGR-16", "LGR-17", "RCN-1", "RCN-8", "RCN-9"}
NOT_BY_VECTORS = {"ID-5", "ID-6", "ENV-12", "TBL-5", "TBL-6", "RL-2", "RL-3"} | {
    f"PUB-{i}" for i in range(1, 9)} | {
    f"NET-{i}" for i in range(1, 13)} | {"BLOB-4", "BLOB-6", "BLOB-15"} | {
    f"KAD-{i}" for i in range(1, 10)} | NOT_BY_VECTORS_04 | NOT_BY_VECTORS_07 | {
    f"ADDR-{i}" for i in range(1, 8)} | {  # what a node dials: tests/test_addrpolicy.py
    f"PEER-{i}" for i in range(1, 10)} | {  # scores, bans, connections: tests/adversarial
    "SYNC-1", "SYNC-2", "SYNC-3", "SYNC-6", "SYNC-7"} | {  # whom a node asks, what it sends
    "FRD-8", "FRD-9", "RCP-1", "RCP-3", "CHL-3"} | {  # what a node relays, publishes, stores
    f"DSP-{i}" for i in range(3, 7)} | {  # a dispute's exchanges: tests/integration, tests/proofs
    "ANC-3", "ANC-5", "CLM-3", "BND-2"}  # a node's anchoring, who may bind, the payout key file


def _defined() -> dict[str, str]:
    found: dict[str, str] = {}
    for md in CHAPTERS:
        for rule in RULE_DEF.findall(md.read_text()):
            assert rule not in found, f"{rule} defined in {found[rule]} and {md.name}"
            found[rule] = md.name
    return found


def test_rules_are_numbered_from_one_without_gaps() -> None:
    by_prefix: dict[str, list[int]] = {}
    for rule in _defined():
        prefix, n = rule.rsplit("-", 1)
        assert prefix in PREFIXES, rule
        by_prefix.setdefault(prefix, []).append(int(n))
    assert set(by_prefix) == set(PREFIXES)
    for prefix, numbers in by_prefix.items():
        assert sorted(numbers) == list(range(1, len(numbers) + 1)), prefix


def test_caps_rules_one_to_eight_are_the_validation_order() -> None:
    text = (SPEC / "02-capabilities.md").read_text()
    positions = [text.index(f"- **CAPS-{i}**") for i in range(1, 10)]
    assert positions == sorted(positions)


def test_every_reference_names_a_defined_rule() -> None:
    defined = _defined()
    for md in [*CHAPTERS, SPEC.parent / "conformance" / "README.md"]:
        for prefix, n in RULE_REF.findall(md.read_text()):
            assert f"{prefix}-{n}" in defined, f"{md.name} cites {prefix}-{n}"
    for handler, case in all_cases():
        assert case.rules, f"{handler}/{case.name} cites no rule"
        for rule in case.rules:
            assert rule in defined, f"{handler}/{case.name} cites {rule}"


def test_the_code_cites_defined_rules_only() -> None:
    defined = _defined()
    root = SPEC.parent
    for py in sorted([*root.glob("p2pnode/**/*.py"), *root.glob("conformance/**/*.py")]):
        text = py.read_text()
        for prefix, n in RULE_REF.findall(text):
            assert f"{prefix}-{n}" in defined, f"{py.relative_to(root)} cites {prefix}-{n}"
        stale = re.findall(r"\b(?:JOB|DHT)-[A-Z]\d", text)
        assert not stale, f"{py.relative_to(root)} cites {stale}"


def test_spec_04_names_the_rules_vectors_cannot_show() -> None:
    text = (SPEC / "04-jobs.md").read_text()
    section = text[text.index("### 1.3"):text.index("## 2.")]
    named = {f"{p}-{n}" for p, n in RULE_REF.findall(section)}
    in_04 = {r for r, md in _defined().items() if md == "04-jobs.md"}
    assert named == NOT_BY_VECTORS & in_04 == NOT_BY_VECTORS_04


def test_spec_07_names_the_rules_vectors_cannot_show() -> None:
    text = (SPEC / "07-ledger.md").read_text()
    section = text[text.index("### 1.1"):text.index("## 2.")]
    named = {f"{p}-{n}" for p, n in RULE_REF.findall(section)}
    in_07 = {r for r, md in _defined().items() if md == "07-ledger.md"}
    assert named == NOT_BY_VECTORS & in_07 == NOT_BY_VECTORS_07


def test_every_testable_rule_has_a_vector() -> None:
    cited = {r for v in runner.load(runner.DEFAULT_VECTORS) for r in v.meta["rules"]}
    missing = sorted(set(_defined()) - cited - NOT_BY_VECTORS)
    assert missing == []
    assert not (cited & NOT_BY_VECTORS)


def _table_rows(text: str, header_start: str) -> list[list[str]]:
    """The rows of every table whose header starts so; tables may be indented (in a list)."""
    lines = [line.strip() for line in text.splitlines()]
    rows: list[list[str]] = []
    for i, line in enumerate(lines):
        if line.startswith(header_start):
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip("|").split("|")])
    return rows


def test_reason_table_lists_every_reason_code() -> None:
    rows = _table_rows((SPEC / "01-encoding.md").read_text(), "| code | outcome |")
    codes = [r[0].strip("`") for r in rows]
    assert codes == [r.value for r in Reason]
    for r in rows:
        assert r[1] in ("reject", "ignore"), r
        assert RULE_REF.search(r[2]), r


@pytest.mark.parametrize("chapter", ["01-encoding.md", "02-capabilities.md", "03-network.md",
                                     "04-jobs.md", "05-content.md"])
def test_parameter_tables_match_the_code(chapter: str) -> None:
    rows = _table_rows((SPEC / chapter).read_text(), "| Parameter | Value |")
    assert rows
    checked = 0
    for name, value, _unit, constant, _why in rows:
        m = re.fullmatch(r"`(p2pnode(?:\.\w+)+)`", constant)
        if constant == "—":
            continue
        assert m, f"{chapter}: {name}: constant cell {constant!r}"
        module_path, attr = m.group(1), list[str]()
        obj: object
        while True:
            try:
                obj = importlib.import_module(module_path)
                break
            except ModuleNotFoundError:
                module_path, last = module_path.rsplit(".", 1)
                attr.insert(0, last)
        for a in attr:
            obj = getattr(obj, a)
        assert float(value) == obj, f"{chapter}: {name} is {value} in the spec, {obj} in code"
        checked += 1
    assert checked >= 1


def _slug(heading: str) -> str:
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def test_links_between_chapters_resolve() -> None:
    anchors = {md.name: {_slug(h) for h in re.findall(r"^#+ (.+)$", md.read_text(), re.M)}
               for md in CHAPTERS}
    for md in CHAPTERS:
        for target, anchor in re.findall(r"\]\(([\w.-]+\.md)?(?:#([\w-]+))?\)", md.read_text()):
            if not target and not anchor:
                continue
            name = target or md.name
            assert (SPEC / name).exists(), f"{md.name} links to {name}"
            if anchor:
                assert anchor in anchors[name], f"{md.name} links to {name}#{anchor}"


def test_the_requester_state_table_is_the_code() -> None:
    from p2pnode.jobs.market import TRANSITIONS

    rows = _table_rows((SPEC / "04-jobs.md").read_text(), "| state | event | next state |")
    table = {(state, event): nxt for state, event, nxt in rows}
    assert len(table) == len(rows)  # no pair twice
    assert table == {(s.value, e.value): n.value for (s, e), n in TRANSITIONS.items()}


def test_the_worker_state_table_is_the_code() -> None:
    from p2pnode.jobs.worker import TRANSITIONS

    rows = _table_rows((SPEC / "04-jobs.md").read_text(), "| worker state | event |")
    table = {(state, event): nxt for state, event, nxt in rows}
    assert len(table) == len(rows)
    assert table == {(s.value, e.value): n.value for (s, e), n in TRANSITIONS.items()}


def test_message_type_tables_are_the_code() -> None:
    import p2pnode.caps.model  # noqa: F401  (registers caps.ad)
    from p2pnode.jobs import model
    from p2pnode.wire import envelope

    env2 = _table_rows((SPEC / "01-encoding.md").read_text(), "| `t` | versions |")
    listed = {}
    for t, versions, limit, _chapter in env2:
        listed[t.strip("`")] = (versions, int(limit.removesuffix(" bytes")))
    assert listed == {t: (",".join(map(str, sorted(envelope.VERSIONS[t]))), size)
                      for t, size in envelope.SIZE_LIMITS.items()}
    jobs = _table_rows((SPEC / "04-jobs.md").read_text(), "| `t` | CDDL rule |")
    assert {r[0].strip("`"): int(r[4]) for r in jobs} == model.SIZES
    for t, rule, *_ in jobs:
        name = t.strip("`").split(".")[1]
        assert rule.strip("`") == ("JobSpec" if name == "spec" else "Job" + name.capitalize())

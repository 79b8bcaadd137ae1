"""The benchmark's harness, small: its load generator against one real node, checking the
accounting rather than the speed. A benchmark whose counts do not add up measures nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from bench import loadgen, report, run, steps, systems

from support.requirements import need

CLIENTS = 40
SENDERS = 4


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[systems.System]:
    need("node", "apt-get install nodejs npm")
    single = systems.Single(str(tmp_path_factory.mktemp("bench-node")))
    try:
        single.start()
        yield single
    finally:
        single.stop()


@pytest.fixture(params=["2.0.0", "1.0.0"])
def generator(request: pytest.FixtureRequest, node: systems.System, tmp_path: Path) -> Iterator[loadgen.LoadGenerator]:
    gen = loadgen.LoadGenerator(log_path=str(tmp_path / "loadgen.log"))
    try:
        joined = gen.connect(node.ws_urls(), CLIENTS, vsn=request.param, deadline=15)
        assert joined["joined"] == CLIENTS, joined
        yield gen
    finally:
        gen.stop()


def test_every_shout_reaches_every_joined_client_once_in_order(node: systems.System,
                                                               generator: loadgen.LoadGenerator) -> None:
    cpu0 = sum(node.cpu_seconds().values())
    r = generator.run(step=1, senders=SENDERS, rate=40, duration=1.0, drain=5)
    shouts = 40
    assert r["shouts"] == shouts
    assert r["expected"] == shouts * CLIENTS                 # the sender hears itself too
    assert r["delivered"] == r["expected"]
    assert (r["lost"], r["duplicates"], r["out_of_order"], r["extra"], r["bad_frames"], r["disconnects"]) == (0,) * 6
    lat = r["latency_ms"]
    assert 0 <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"] < 5000
    assert r["generator"]["cpu_seconds"] > 0
    assert sum(node.cpu_seconds().values()) > cpu0            # the node's CPU is read from /proc
    assert not r["aborted"]


def test_losses_and_disconnects_are_counted(node: systems.System, generator: loadgen.LoadGenerator) -> None:
    r = generator.run(step=2, senders=SENDERS, rate=40, duration=1.5, drain=3, quiet=0.5, drop=3, drop_after=0.5)
    assert r["disconnects"] == 3
    assert r["lost"] > 0
    assert r["delivered"] + r["lost"] == r["expected"]       # every expected delivery is one or the other
    assert r["duplicates"] == 0 and r["extra"] == 0
    # The next step reconnects the dropped clients and counts only its own shouts.
    again = generator.ensure()
    assert again["reconnected"] == 3 and again["total_joined"] == CLIENTS
    r = generator.run(step=3, senders=SENDERS, rate=20, duration=0.5)
    assert r["lost"] == 0 and r["delivered"] == r["expected"] == r["shouts"] * CLIENTS


def test_sustained_rule_and_report(tmp_path: Path) -> None:
    ok = {"aborted": False, "lost": 0, "duplicates": 0, "disconnects": 0, "delivered": 10, "expected": 10,
          "latency_ms": {"p99": 999.0}}
    assert steps.sustained(ok)
    assert not steps.sustained({**ok, "latency_ms": {"p99": 1000.0}})
    assert not steps.sustained({**ok, "lost": 1, "delivered": 9})
    records = [{"system": s, "workload": "fanout-5000", "offered_per_s": 5000, "deliveries_per_s": 5000, "lost": 0,
                "duplicates": 0, "out_of_order": 0, "latency_ms": {"p50": 1, "p90": 2, "p99": p99, "max": 4},
                "server": {"cpu_us_per_delivery": cpu, "cpu_fraction": 0.2, "rss_mb": 50},
                "generator": {"cpu_fraction": 0.1}, "target_deliveries_per_s": 5000}
               for s, cpu, p99 in (("single", 10.0, 20.0), ("redis", 12.0, 30.0), ("gossipy", 5.0, 10.0))]
    lines = report.headline(records)
    assert "0.42× the Redis way's" in lines[0] and "0.50× one node's" in lines[0]
    assert "[target ≤ 0.50× Redis, < 1× one node: met, met]" in lines[0]
    readme = tmp_path / "README.md"
    readme.write_text("# prose stays\n")
    report.write_readme(records, str(readme))
    report.write_readme(records, str(readme))                 # idempotent: one section, prose kept
    text = readme.read_text()
    assert text.startswith("# prose stays") and text.count(report.README_START) == 1


def test_rooms_of_two_reach_only_their_members(node: systems.System, tmp_path: Path) -> None:
    gen = loadgen.LoadGenerator(log_path=str(tmp_path / "loadgen.log"))
    try:
        assert gen.connect(node.ws_urls(), CLIENTS, topic="room:pairs", rooms=CLIENTS // 2)["joined"] == CLIENTS
        r = gen.run(step=1, senders=CLIENTS, rate=80, duration=1.0)
        assert r["shouts"] == 80 and r["rooms"] == CLIENTS // 2
        assert r["expected"] == r["shouts"] * 2 == r["delivered"]
        assert (r["lost"], r["duplicates"], r["out_of_order"], r["extra"], r["misrouted"]) == (0,) * 5
    finally:
        gen.stop()


@pytest.mark.parametrize("kind", ["redis", "gossipy"])
def test_the_clustered_systems_start_and_carry_rooms_of_two_across_their_nodes(
        kind: str, tmp_path: Path) -> None:
    """The two systems the benchmark compares start as the full run starts them (the Redis way
    with Debian's redis-server and bench/requirements.txt's client), and a room's two members,
    on different nodes, hear each other."""
    system = systems.SYSTEMS[kind](str(tmp_path))
    gen = loadgen.LoadGenerator(log_path=str(tmp_path / "loadgen.log"))
    try:
        system.start()
        assert len(system.ws_urls()) == 3
        assert gen.connect(system.ws_urls(), CLIENTS, topic="room:pairs", rooms=CLIENTS // 2)["joined"] == CLIENTS
        r = gen.run(step=1, senders=CLIENTS, rate=80, duration=1.0)
        assert r["expected"] == r["shouts"] * 2 == r["delivered"]
        assert (r["lost"], r["duplicates"], r["out_of_order"], r["extra"], r["misrouted"]) == (0,) * 5
    finally:
        gen.stop()
        system.stop()


def test_a_run_missing_a_dependency_names_the_command_and_installs_nothing(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(run.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(run.shutil, "which", lambda name: None)
    monkeypatch.setattr(run, "Bench", None)  # a run that got past the check would fail here
    assert run.main(["--systems", "single,redis,gossipy", "--profile"]) != 0
    said = capsys.readouterr().err
    assert "matplotlib, redis, hiredis, py-spy" in said
    assert "-m pip install -r " in said and "requirements.txt" in said
    assert "apt-get install redis-server" in said


"""bench/scale.py, small: 500 connections, a storm of 300, 20 posts. It checks the accounting
(every client joined, each broadcast reached every one of them once, every client of the
killed node came back, no checked shout lost), not the speed."""

from __future__ import annotations

from pathlib import Path

from bench import scale

from support.requirements import need


def test_scale_accounting_adds_up(tmp_path: Path) -> None:
    need("node", "apt-get install nodejs npm")
    args = scale.parse_args(["--connections", "500", "--storm-clients", "300", "--posts", "20", "--broadcasts", "2",
                             "--idle-window", "1", "--storm-window", "3", "--storm-timeout", "30",
                             "--out", str(tmp_path)])
    bench = scale.Scale(args)
    assert bench.run() == 0
    floor, hold, post, storm = (next(r for r in bench.results.records if r["part"] == part)
                                for part in ("floor", "hold", "post", "storm"))

    assert floor["connections"] > 1000 and 0 < floor["send_cpu_us"] < 1000

    assert (hold["connect_joined"], hold["connect_failed"], hold["nodes"]) == (500, 0, 1)
    assert hold["broadcast_all_received"] and [b["received"] for b in hold["broadcasts"]] == [500, 500]
    assert 0 < hold["broadcasts"][0]["first_ms"] <= hold["broadcasts"][0]["last_ms"] < 30_000
    assert hold["kb_per_connection"] > 0 and hold["idle_cpu_fraction"] >= 0
    # With the generators stopped: every node wrote it to all 500, and each then read it once.
    paused = hold["broadcast_to_buffers"]
    assert paused["written"] >= 500 and (paused["received_after"], paused["dup"]) == (500, 0)
    assert 0 < paused["all_written_ms"] < 30_000

    assert (post["delivered"], post["expected"], post["dup"]) == (80, 80, 0)
    assert 0 < post["p50_ms"] <= post["p99_ms"] <= post["max_ms"]

    # Client i of each of the 2 generators (150 each) was on node i % 3: 50 each on node 3.
    assert (storm["victims"], storm["lost"], storm["rejoined"], storm["joined_after"]) == (100, 100, 100, 300)
    assert storm["survivors_alive"] and storm["all_rejoined_s"] is not None
    assert storm["health_check_ms"] == 500 and storm["survivors_cpu_s"] > 0 and storm["generators_cpu_s"] > 0
    assert sum(storm["tries"].values()) == 100
    checked = storm["checked"]
    assert checked["delivered"] == checked["expected"] > 0
    assert (checked["lost"], checked["duplicates"], checked["out_of_order"], checked["disconnects"]) == (0, 0, 0, 0)

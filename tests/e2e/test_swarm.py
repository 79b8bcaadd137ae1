"""docker-stack.yml on a one-node swarm (issue 16), as one flow: deploy 3 replicas, scale to 5,
kill a task, roll out a rebuilt image, `docker stack rm`.

The tasks publish port 4000 on host ports of their own (the file's host-mode switches: this
kernel has no IPVS for the routing mesh); clients are real websockets to 127.0.0.1 on those
ports. Everything the test made is removed pass or fail, and the engine leaves the swarm if
it was in none (swarm.one_node_swarm).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from pathlib import Path

import pytest

from support import e2e_harness
from support.e2e_harness import ReleaseTree, chat_between, close_all, log, stamped_lines
from support.phoenix_client import PhoenixClient, assert_shout_reaches, join_room
from support.swarm import Stack, Task, one_node_swarm, ready

pytestmark = pytest.mark.e2e
to_thread = asyncio.to_thread

LINK_LIMIT = 2.0  # seconds from a new task serving to its links with every other node
MIN_SERVING = 2  # tasks that must answer /readyz at every moment of the rolling update


def linked_after_serving(stack: Stack, new: Task, tasks: list[Task], names: dict[int, str]) -> float:
    """Seconds from ``new`` logging that it serves to the last "node up" between it and every
    other task (on either side), by docker's log timestamps (names: node names by slot)."""
    container = stack.container(new)
    serving = stamped_lines(container, r"serving websockets on ")
    assert serving, f"{new.short} never logged that it serves:\n{container.logs().decode(errors='replace')}"
    ups = []
    for other in (t for t in tasks if t.slot != new.slot):
        for side, peer in ((container, names[other.slot]), (stack.container(other), names[new.slot])):
            found = stamped_lines(side, rf"node up: {peer} ")
            assert found, f"no 'node up: {peer}' in {side.name}'s log"
            ups.append(found[-1][0])
    return max(ups) - serving[0][0]


def test_the_stack_deploys_scales_heals_and_rolls_out(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    e2e_harness.live_progress(request.config)
    client = e2e_harness.docker_engine()
    tree = ReleaseTree.copy_repository(tmp_path / "tree")
    began = time.monotonic()
    try:
        tree.release()
        with one_node_swarm(client):
            stack = Stack(client, tree)
            try:
                first_image = stack.build_image("1")
                run_flow(stack, first_image)
            finally:
                left = stack.remove()
            assert not left, f"`docker stack rm {stack.name}` left {left}"
            log(f"{stack.name}: `docker stack rm` left no service, container, network or secret")
    finally:
        client.close()
        shutil.rmtree(tree.path, ignore_errors=True)  # the release build is tens of MB
    log(f"the Swarm flow took {time.monotonic() - began:.0f} s")


def run_flow(stack: Stack, first_image: str) -> None:
    step = time.monotonic()
    stack.deploy(first_image)
    tasks, _ = stack.wait_mesh(3)
    log(f"step 1: 3 replicas meshed {time.monotonic() - step:.1f} s after the deploy; chatting across two")
    asyncio.run(chat_between([tasks[0].port, tasks[1].port], "hello swarm"))

    step = time.monotonic()
    first = {t.slot: t.container_id for t in tasks}
    stack.scale(5)
    tasks, views = stack.wait_mesh(5)
    log(f"step 2: scaled to 5, meshed after {time.monotonic() - step:.1f} s")
    assert {t.slot: t.container_id for t in tasks if t.slot in first} == first, "a first task was restarted"
    names = {slot: view["node"] for slot, view in views.items()}
    for new in (t for t in tasks if t.slot not in first):
        linked = linked_after_serving(stack, new, tasks, names)
        log(f"  {new.short} linked to the 4 others {linked:.3f} s after it logged that it serves")
        assert linked <= LINK_LIMIT, f"{new.short} took {linked:.2f} s to link (limit {LINK_LIMIT} s)"

    step = time.monotonic()
    victim = random.choice(tasks)
    before = {t.slot: t.container_id for t in tasks}
    log(f"step 3: docker kill {victim.short}")
    stack.container(victim).kill()
    tasks, _ = stack.wait_mesh(5)
    after = {t.slot: t.container_id for t in tasks}
    assert after[victim.slot] != victim.container_id, "the killed task's slot still has its container"
    del before[victim.slot]
    assert {slot: after[slot] for slot in before} == before, "a task other than the killed one was restarted"
    replaced = next(t for t in tasks if t.slot == victim.slot)
    log(f"  Swarm replaced it with {replaced.short}, meshed {time.monotonic() - step:.1f} s after the kill")
    asyncio.run(chat_between([replaced.port, next(t.port for t in tasks if t.slot != victim.slot)], "healed"))

    step = time.monotonic()
    second_image = stack.build_image("2", labels={"org.gossipy.e2e.build": "2"})
    asyncio.run(rolling_update(stack, tasks, second_image))
    tasks, _ = stack.wait_mesh(5)
    assert {t.image for t in tasks} == {second_image}, f"not every task runs {second_image}: {tasks}"
    log(f"step 4: rolling update done {time.monotonic() - step:.1f} s after the build started")
    asyncio.run(chat_between([tasks[0].port, tasks[-1].port], "all updated"))


def ended(client: PhoenixClient) -> bool:
    """Whether the node closed the client's websocket (tornado reads every frame as it comes,
    the close frame too, and keeps its code in close_code)."""
    return client.conn.protocol is None or client.conn.protocol.is_closing()


async def chat_round(connected: list[tuple[PhoenixClient, Task]]) -> bool:
    """Every client shouts once and every client gets every shout. False if a websocket was
    closed meanwhile (its task is stopping; the caller rejoins it and tries again)."""
    clients = [c for c, _ in connected]
    try:
        for sender, task in connected:
            await assert_shout_reaches(sender, clients, f"from {task.short} at {time.monotonic():.1f}")
    except AssertionError:
        if any(ended(c) for c in clients):
            return False
        raise
    return True


async def rolling_update(stack: Stack, tasks: list[Task], image: str) -> None:
    """A client on each task; `docker service update --image`; while Swarm replaces the
    tasks one by one, every client of a task that stops is closed with 1001, rejoins on another
    task that is ready and chats with all the others; at least MIN_SERVING tasks stay ready."""
    connected: list[tuple[PhoenixClient, Task]] = [(await join_room(t.port), t) for t in tasks]
    cut_off: set[str] = set()  # containers whose clients got 1001
    fewest = len(tasks)
    chatted = True
    try:
        await to_thread(stack.update_image, image)
        started = time.monotonic()
        while (state := await to_thread(stack.update_state)) != "completed":
            assert state in (None, "updating"), f"the update went {state}:\n{stack.describe_state()}"
            assert time.monotonic() - started < 180, f"the update still runs after 180 s:\n{stack.describe_state()}"
            serving = [t for t in await to_thread(stack.tasks) if await to_thread(ready, t.port)]
            fewest = min(fewest, len(serving))
            assert fewest >= MIN_SERVING, f"only {[t.short for t in serving]} ready during the update"
            for i, (client, task) in enumerate(connected):
                if not ended(client):
                    continue
                code = client.conn.close_code
                assert code == 1001, f"a client of {task.short} was cut off with code {code}, not 1001"
                cut_off.add(task.container_id)
                target = random.choice([t for t in serving if t.container_id != task.container_id])
                connected[i] = (await join_room(target.port), target)
                log(f"  a client of {task.short} got 1001 and rejoined on {target.short}")
                chatted = False
            if not chatted:
                chatted = await chat_round(connected)
            await asyncio.sleep(0.3)
        log(f"  update completed {time.monotonic() - started:.1f} s after the deploy; at least {fewest} "
            f"tasks ready throughout")
        missed = {t.short for t in tasks if t.container_id not in cut_off}
        assert not missed, f"the clients of {sorted(missed)} were never closed with 1001"
    finally:
        close_all(c for c, _ in connected)

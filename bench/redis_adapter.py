"""The Redis way, for the benchmark's baseline: a pubsub ``Adapter`` that publishes every
broadcast to one Redis channel and dispatches what the other nodes published.

What socket.io-redis does: a node dispatches its own broadcasts locally at once (PubSub does
that after ``adapter.broadcast``), publishes them tagged with its id, and ignores its own echo
when Redis sends it back. Publishes issued within one event-loop iteration go out in one
pipeline (as node_redis/ioredis pipeline commands written in one tick), so the baseline is not
handicapped by a round trip per broadcast.

Bench-only: it needs the ``redis`` package (bench/requirements.txt), which gossipy itself never
imports.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

import redis.asyncio as redis

from server.pubsub import Broadcast, NodeId, PubSub

log = logging.getLogger("gossipy.bench.redis")

CHANNEL = "gossipy:broadcast"
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class RedisAdapter:
    def __init__(self, pubsub: PubSub, host: str, port: int, channel: str = CHANNEL) -> None:
        self.pubsub = pubsub
        self.host = host
        self.port = port
        self.channel = channel
        self.node_id = uuid.uuid4().hex[:16]
        # No node names in the Redis way: nodes are anonymous publishers to one channel.
        self.node = NodeId(f"redis-{self.node_id}@nohost", 0)
        self._prefix = self.node_id + "\n"
        self._pending: list[str] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.published = 0
        self.received = 0
        self.echoes = 0

    async def start(self) -> None:
        self._pub = redis.Redis(host=self.host, port=self.port, decode_responses=True)
        self._sub_client = redis.Redis(host=self.host, port=self.port, decode_responses=True)
        self._sub = self._sub_client.pubsub(ignore_subscribe_messages=True)
        await self._sub.subscribe(self.channel)
        await self._pub.ping()
        self._tasks = [asyncio.create_task(self._publisher(), name="redis-publisher"),
                       asyncio.create_task(self._subscriber(), name="redis-subscriber")]
        log.info("redis adapter %s on %s:%d channel %s", self.node_id, self.host, self.port, self.channel)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._sub.aclose()
        await self._sub_client.aclose()
        await self._pub.aclose()

    # ---- Adapter -------------------------------------------------------------------------------

    def broadcast(self, message: Broadcast) -> None:
        self._pending.append(self._prefix + _dumps([message.topic, message.event, message.payload]))
        self._wake.set()

    def direct_broadcast(self, node: str, message: Broadcast) -> None:
        """Nothing: one shared channel has no way to address one node, and no node ever comes
        up here to be answered (presence, which asks for this, is not what this baseline runs)."""

    # ---- the two directions --------------------------------------------------------------------

    async def _publisher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                if len(batch) == 1:
                    await self._pub.publish(self.channel, batch[0])
                else:
                    pipe = self._pub.pipeline(transaction=False)
                    for data in batch:
                        pipe.publish(self.channel, data)
                    await pipe.execute()
                self.published += len(batch)
            except Exception:
                log.exception("publishing %d broadcasts to redis failed", len(batch))

    async def _subscriber(self) -> None:
        async for item in self._sub.listen():
            if item.get("type") != "message":
                continue
            origin, _, body = item["data"].partition("\n")
            if origin == self.node_id:
                self.echoes += 1
                continue
            self.received += 1
            try:
                topic, event, payload = json.loads(body)
            except (ValueError, TypeError):
                log.warning("ignoring an undecodable message from redis")
                continue
            self.pubsub.local_broadcast(Broadcast(topic, event, payload))


def attach(pubsub: PubSub, host: str, port: int, **kwargs: Any) -> RedisAdapter:
    adapter = RedisAdapter(pubsub, host, port, **kwargs)
    pubsub.adapter = adapter
    return adapter

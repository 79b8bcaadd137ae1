"""The app the presence benchmark (bench/presence.py) runs on its nodes: the chat's room, plus
what filling a topic and timing one diff take, written against ``server.channels`` only.

* ``{"name": NAME}`` tracks NAME with the chat's meta (``node``, ``online_at``), as
  ``server.chat`` does; ``{}`` only subscribes (an observer: it gets diffs, not tracked);
* ``{"fill": K, "prefix": P}`` tracks K keys ``P0`` .. ``P<K-1>`` from one connection, so that a
  topic can hold 10,000 presences without 10,000 clients each receiving every later join;
* ``touch`` updates the tracked NAME's meta with the payload's ``n``: one presence_diff (the old
  meta leaving, the new one joining) to every subscriber on every node.
"""

from __future__ import annotations

import time
from typing import Any

from server.channels import Channel, Reply


class BenchRoom(Channel):
    name: str | None = None

    def meta(self) -> dict[str, Any]:
        return {"node": self.node_name, "online_at": int(time.time() * 1000)}

    def join(self, payload: Any) -> dict[str, Any]:
        for i in range(payload.get("fill", 0)):
            self.presence.track(f"{payload['prefix']}{i}", self.meta())
        self.name = payload.get("name")
        if self.name is not None:
            self.presence.track(self.name, self.meta())
        return {}

    def handle_in(self, event: str, payload: Any) -> Reply | None:
        if event != "touch" or self.name is None:
            return super().handle_in(event, payload)
        self.presence.update(self.name, {**self.meta(), "n": payload["n"]})
        return Reply.ok()


ROUTES = [("room:*", BenchRoom)]

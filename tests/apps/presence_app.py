"""A presence app for the tests, written only against ``server.channels``: ``room:*`` tracks
the join payload's ``name`` (if any) with ``{"status": ...}``; ``status`` updates it,
``untrack`` drops it, ``list`` replies with this node's list of the topic, ``crash`` is a bug.
"""

from __future__ import annotations

from typing import Any

from server.channels import Channel, Reply


class RoomChannel(Channel):
    def join(self, payload: Any) -> Any:
        self.name = payload.get("name")
        if isinstance(self.name, str):
            self.presence.track(self.name, {"status": payload.get("status", "online")})
        return {}

    def handle_in(self, event: str, payload: Any) -> Reply | None:
        if event == "status":
            self.presence.update(self.name, {"status": payload["status"]})
            return Reply.ok()
        if event == "untrack":
            self.presence.untrack(self.name)
            return Reply.ok()
        if event == "list":
            return Reply.ok(self.presence.list(payload.get("topic")))
        if event == "crash":
            raise RuntimeError("asked to crash")
        return super().handle_in(event, payload)


ROUTES: list[tuple[str, type[Channel]]] = [("room:*", RoomChannel)]

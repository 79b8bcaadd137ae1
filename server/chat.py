"""The chat room of the article: every shout on ``room:*`` goes to everyone in that room, and
everyone who joined with a name sees who else is there, and on which node.

Written only against the channel API. Whether "everyone" spans one node or a cluster is the
node's configuration, never this module's concern.
"""

import time
from typing import Any

from .channels import Channel, JoinRefused, Reply

MAX_NAME = 32  # the chat page's nickname field holds as much


class RoomChannel(Channel):
    def join(self, payload: Any) -> dict[str, Any]:
        # The article's ws.html joins with {}: it is in the room, just not in the member list.
        name = payload.get("name") if isinstance(payload, dict) else None
        if name is None:
            return {}
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise JoinRefused(f"name: 1 to {MAX_NAME} characters")
        # Keyed by name, so one person's tabs and devices are one member, with a meta each.
        self.presence.track(name, {"node": self.node_name, "online_at": int(time.time() * 1000)})
        return {}

    def handle_in(self, event: str, payload: Any) -> Reply | None:
        if event != "shout":
            return super().handle_in(event, payload)
        self.broadcast("shout", payload)
        return None


ROUTES = [("room:*", RoomChannel)]

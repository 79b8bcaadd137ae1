"""The chat room of the article: every shout on ``room:*`` goes to everyone in that room.

Written only against the channel API. Whether "everyone" spans one node or a cluster is the
node's configuration, never this module's concern.
"""

from typing import Any

from .channels import Channel, Reply


class RoomChannel(Channel):
    def join(self, payload: Any) -> dict[str, Any]:
        return {}

    def handle_in(self, event: str, payload: Any) -> Reply | None:
        if event != "shout":
            return super().handle_in(event, payload)
        self.broadcast("shout", payload)
        return None


ROUTES = [("room:*", RoomChannel)]

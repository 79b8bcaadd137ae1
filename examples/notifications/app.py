"""Notifications: one private topic per user, ``user:<id>``, that a backend publishes to.

Clients only listen: events arrive from the backend through ``POST /api/broadcast`` (see
publish.py), and a push from a client is refused like any unhandled event. Serve it with
``app: examples.notifications.app`` in vm.yml (this folder's vm.yml does).

Written against the public channel API only, as any app of yours would be.
"""

from __future__ import annotations

from typing import Any

from server.channels import Channel, JoinRefused

PREFIX = "user:"


class UserChannel(Channel):
    """``user:<id>``: the notifications of one user."""

    def join(self, payload: Any) -> dict[str, Any]:
        if not self.topic.removeprefix(PREFIX):
            raise JoinRefused("no user id in the topic")
        return {}


ROUTES = [(f"{PREFIX}*", UserChannel)]

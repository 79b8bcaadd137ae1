"""Notifications: one private topic per user, ``user:<id>``, that a backend publishes to.

Clients only listen: events arrive from the backend through ``POST /api/broadcast`` (see
publish.py), and a push from a client is refused like any unhandled event. Serve it with
``app: examples.notifications.app`` in vm.yml (this folder's vm.yml does).

Who is who comes from the connect token (mint_token.py): with ``GOSSIPY_JWT_SECRET`` (or
``auth.jwt_secret``) set, the node's default ``Socket`` admits only valid tokens, makes their
``sub`` the connection's ``user_id``, and lets a token join only the topics of its ``topics``
claim. The channel checks ``user_id`` against the topic as well, so a node started without a
secret (everyone anonymous) still shows nobody anyone else's notifications.

Written against the public channel API only, as any app of yours would be.
"""

from __future__ import annotations

from typing import Any

from server.channels import Channel, JoinRefused

PREFIX = "user:"


class UserChannel(Channel):
    """``user:<id>``: the notifications of one user."""

    def join(self, payload: Any) -> dict[str, Any]:
        user_id = self.assigns.get("user_id")
        if user_id is None:
            raise JoinRefused("sign in first: connect with a token")
        if self.topic != f"{PREFIX}{user_id}":
            raise JoinRefused("not your notifications")
        return {}


ROUTES = [(f"{PREFIX}*", UserChannel)]

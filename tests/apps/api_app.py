"""An app that uses every hook of the public channel API, written only against ``server.channels``.

``room:*``: the join answers with the connection's user id and pushes ``welcome`` right after
its reply (``send_after(0, ...)``); ``whoami`` replies with the assigns; ``shout`` broadcasts,
and each subscriber's copy passes ``handle_out`` (``to`` added, dropped for users who muted
the sender); ``tell_others`` broadcasts ``told`` to everyone but the sender; ``remind``
pushes a ``reminder`` later unless ``forget`` cancels it; ``crash`` is a bug. Every end is recorded in ``ENDED`` for in-process tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from server.channels import Channel, ConnectInfo, ConnectRefused, JoinRefused, Reply, Socket, Timer

ENDED: list[tuple[str, Any, str]] = []  # (topic, user_id, reason)


class RoomChannel(Channel):
    intercept = frozenset({"shout"})

    def join(self, payload: Any) -> Any:
        if payload.get("refuse"):
            raise JoinRefused("asked to refuse")
        self.reminder: Timer | None = None
        self.send_after(0, ("welcome", {"topic": self.topic}))
        return {"user_id": self.assigns.get("user_id")}

    def handle_in(self, event: str, payload: Any) -> Reply | None:
        if event == "whoami":
            return Reply.ok(dict(self.assigns))
        if event == "shout":
            self.broadcast("shout", {**payload, "from": self.assigns.get("user_id")})
            return None
        if event == "tell_others":
            self.broadcast_from("told", payload)
            return None
        if event == "remind":
            self.reminder = self.send_after(payload["after"], ("reminder", payload))
            return Reply.ok()
        if event == "forget" and self.reminder is not None:
            self.reminder.cancel()
            return Reply.ok()
        if event == "crash":
            raise RuntimeError("asked to crash")
        return super().handle_in(event, payload)

    def handle_out(self, event: str, payload: Any) -> Any:
        if payload.get("from") in self.assigns.get("muted", ()):
            return None
        return {**payload, "to": self.assigns.get("user_id")}

    def handle_info(self, message: Any) -> None:
        event, payload = message
        self.push(event, payload)

    def terminate(self, reason: str) -> None:
        ENDED.append((self.topic, self.assigns.get("user_id"), reason))


class KeySocket(Socket):
    """Its own check instead of the configured token: ``?key=letmein&user=NAME``."""

    def connect(self, params: Mapping[str, str], info: ConnectInfo) -> None:
        if params.get("key") != "letmein":
            raise ConnectRefused("no or wrong key")
        self.assigns = {"user_id": params.get("user", "anonymous"), "peer": info.peer}


ROUTES: list[tuple[str, type[Channel]]] = [("room:*", RoomChannel)]

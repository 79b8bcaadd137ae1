"""Phoenix Channels for Tornado: everything an app writes against, from this one module.

An app module exposes ``ROUTES`` (topic patterns to ``Channel`` classes, first match wins)
and, optionally, ``SOCKET`` (a ``Socket`` subclass whose ``connect`` decides who may connect
and what the connection carries). The names below are the stable API; the rest of
``server.channels`` (the multiplexer, the websocket, the wire formats) is not for apps::

    import hmac
    from collections.abc import Mapping
    from typing import Any

    from server.channels import Channel, ConnectInfo, ConnectRefused, JoinRefused, Reply, Socket

    class RoomChannel(Channel):
        intercept = frozenset({"shout"})          # these broadcasts pass through handle_out

        def join(self, payload: Any) -> Any:
            if self.topic == "room:vip" and not self.assigns.get("vip"):
                raise JoinRefused("vip only")     # -> {"status": "error", "response": {"reason": ...}}
            self.send_after(0, "after_join")       # -> handle_info("after_join"), after the reply
            # -> presence_state after the reply, presence_diff to the room; leaves when the channel
            # ends. TopicFull/NodeFull (LimitExceeded), uncaught here: "presence limit reached"
            self.presence.track(self.assigns.get("user_id", "anonymous"), {"status": "online"})
            return {"user": self.assigns.get("user_id")}

        def handle_in(self, event: str, payload: Any) -> Reply | None:
            if event == "shout":
                self.broadcast("shout", {**payload, "from": self.assigns.get("user_id")})
                return None
            if event == "ping":
                return Reply.ok({"pong": payload})
            if event == "away":   # a new phx_ref, phx_ref_prev the old; who: self.presence.list()
                self.presence.update(self.assigns.get("user_id", "anonymous"), {"status": "away"})
                return None
            return super().handle_in(event, payload)   # unknown event: the channel crashes

        def handle_out(self, event: str, payload: Any) -> Any:
            return None if payload["from"] in self.assigns.get("muted", ()) else payload

        def handle_info(self, message: Any) -> None:
            self.push("welcome", {"topic": self.topic})

        def terminate(self, reason: str) -> None:  # leave, closed, shutdown, rejoined, crashed
            if reason == "leave":
                self.broadcast_from("left", {"user": self.assigns.get("user_id")})

    class ApiKeySocket(Socket):
        # Replaces the token check of auth.jwt_secret (the node warns at boot if one is set);
        # call super().connect(params, info) first to keep it and add to it.
        def connect(self, params: Mapping[str, str], info: ConnectInfo) -> None:
            # In constant time: a plain != tells a guesser how much of the key was right.
            if not hmac.compare_digest(params.get("key", "").encode(), b"letmein"):
                raise ConnectRefused("no or wrong key")   # -> HTTP 403, logged without the key
            self.assigns = {"user_id": params.get("user", "anonymous")}

    ROUTES = [("room:*", RoomChannel)]
    SOCKET = ApiKeySocket   # leave it out for token auth by configuration (auth.jwt_secret)
"""

from ..presence.state import AlreadyTracked, LimitExceeded, NodeFull, NotTracked, TopicFull
from .channel import Channel, JoinRefused, Presence, Reply, Timer
from .connect import ConnectInfo, ConnectRefused, Socket

__all__ = ["AlreadyTracked", "Channel", "ConnectInfo", "ConnectRefused", "JoinRefused", "LimitExceeded", "NodeFull",
           "NotTracked", "Presence", "Reply", "Socket", "Timer", "TopicFull"]

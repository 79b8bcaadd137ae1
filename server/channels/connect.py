"""The app's socket class: who may connect, and what a connection carries (Phoenix's UserSocket).

The node makes one ``Socket`` per websocket request, after the request passed the protocol and
origin checks and before it is upgraded, and calls ``connect``. What ``connect`` leaves in
``assigns`` every channel of the connection reads as ``self.assigns``; ``may_join`` is asked
before each join. The base class does token auth by configuration (``auth.jwt_secret``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ..auth import AuthError, Identity, TokenVerifier

TOKEN_PARAM = "token"
# Shared by every connection without a token: an idle socket should cost little memory.
_NO_ASSIGNS: Mapping[str, Any] = MappingProxyType({})


def read_only_assigns(assigns: object) -> Mapping[str, Any]:
    """What channels read as ``self.assigns``: a token's claims as they are (already read-only),
    anything else an app's ``connect`` set copied, so it cannot change under the channels.
    TypeError for a value that is not a mapping."""
    if isinstance(assigns, MappingProxyType):
        return assigns
    if not isinstance(assigns, Mapping):
        raise TypeError(f"assigns must be a mapping, not {type(assigns).__name__}")
    return MappingProxyType(dict(assigns))


class ConnectRefused(Exception):
    """Raised by ``connect`` to refuse a connection: the client gets HTTP 403, and the node
    logs ``reason`` in one line (so it must not contain the credential)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ConnectInfo:
    """What ``connect`` may know of the request besides its query parameters."""

    peer: str  # the client's address
    headers: Mapping[str, str]  # the upgrade request's headers (case-insensitive names)


class Socket:
    """Base class for an app's socket class (the app module's ``SOCKET``).

    The node constructs it with the verifier of its configured ``auth`` section (None when no
    ``jwt_secret`` is set), so a subclass that overrides ``__init__`` passes it on.
    """

    __slots__ = ("_verifier", "assigns", "_identity")  # a subclass without __slots__ still has a __dict__

    def __init__(self, verifier: TokenVerifier | None) -> None:
        self._verifier = verifier
        self.assigns: Mapping[str, Any] = _NO_ASSIGNS
        self._identity: Identity | None = None  # a verified token's

    def connect(self, params: Mapping[str, str], info: ConnectInfo) -> None:
        """Called once per websocket request, before the upgrade, with its query parameters
        (phoenix.js sends ``new Socket(url, {params})`` there, with ``vsn``). Set
        ``self.assigns`` to what channels should see of this connection, or raise
        ``ConnectRefused(reason)`` to answer 403. Any other exception answers 403 too and is
        logged with its traceback. Runs on the event loop: it must not block.

        By default, when the node has an ``auth.jwt_secret``, the ``token`` parameter must be a
        valid JWT signed with it: its claims become the assigns (``sub`` also as ``user_id``)
        and its ``topics`` claim, if any, limits which topics may be joined. Without a secret,
        anyone connects with empty assigns. Override to authenticate otherwise (a session
        cookie in ``info.headers``, say); call ``super().connect(params, info)`` to keep the
        token check and add to it."""
        if self._verifier is None:
            return
        try:
            identity = self._verifier.verify(params.get(TOKEN_PARAM))
        except AuthError as exc:
            raise ConnectRefused(f"token {exc}") from None
        self.assigns = identity.assigns
        self._identity = identity

    def may_join(self, topic: str) -> bool:
        """Asked before each join's ``Channel.join``: False refuses it with
        ``{"reason": "unauthorized"}``. By default, what the token's ``topics`` claim allows
        (every topic without a token or without the claim)."""
        return self._identity is None or self._identity.may_join(topic)

"""The peer-stream handshake: node names, cookie challenge/response, protocol version.

Modelled on Erlang's ``dist_util`` and, like it, entered as "we started" (:class:`Initiator`,
node A) or "other started" (:class:`Acceptor`, node B). Each step is named after the wire
message it sends or awaits::

    A: send_name -> recv_status -> recv_challenge -> send_challenge_reply -> recv_challenge_ack
    B: recv_name -> send_status -> send_challenge -> recv_challenge_reply -> send_challenge_ack

Sans I/O: frames go in through ``receive_frame``, bytes come out of ``data_to_send``; whoever
owns the socket moves them. The cookie never crosses the wire: each side sends a fresh random
challenge and the other proves it knows the cookie with an HMAC-SHA256 over both challenges
and both names (so a digest answers one handshake only, in one direction), checked with
``hmac.compare_digest``. B proves itself only after A has, so a stranger learns nothing.

Whether B lets A in (a duplicate name, a simultaneous dial) is not decided here: after
``recv_name`` the acceptor stops in ``SEND_STATUS`` and its owner calls :meth:`Acceptor.answer`.

A *hidden* initiator (the release's ``ping``/``nodes`` commands, like Erlang's nodetool) proves
the cookie the same way but never becomes a cluster member.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from enum import Enum
from hashlib import sha256
from typing import Any, TypeVar

from ..nodename import NodeName, NodeNameError, kind
from ..settings import Cookie
from .framing import Frame, FrameError, FrameType, decode_json, encode_json

# The lowest and highest protocol versions this code speaks.
VERSIONS = (1, 1)
CHALLENGE_BYTES = 32
_HEX_CHALLENGE = re.compile(rf"^[0-9a-f]{{{2 * CHALLENGE_BYTES}}}$")
_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_MAX_NAME = 255
_MAX_CREATION = 2**32
# _get returns a field as the type it checked it to be.
_Field = TypeVar("_Field")


class Reason(str, Enum):
    """Why a handshake did not bring a peer up; the tag that is logged and sent to the peer."""

    BAD_COOKIE = "bad_cookie"
    DUPLICATE_NAME = "duplicate_name"
    NAME_MODE_MISMATCH = "name_mode_mismatch"
    BAD_VERSION = "bad_version"
    NOT_ALLOWED = "not_allowed"
    # A answered for another name than the one dialed (e.g. a stale address).
    WRONG_NODE = "wrong_node"
    MALFORMED = "malformed"
    TIMEOUT = "timeout"
    CLOSED = "closed"
    # Not a refusal: B keeps another stream to A (it won a simultaneous dial, or is already up).
    SIMULTANEOUS = "simultaneous"


# Reasons a peer may send us in a REFUSE frame (the rest are only ever local).
_REFUSABLE = frozenset({Reason.BAD_COOKIE, Reason.DUPLICATE_NAME, Reason.NAME_MODE_MISMATCH,
                        Reason.BAD_VERSION, Reason.NOT_ALLOWED, Reason.WRONG_NODE, Reason.MALFORMED})


class HandshakeError(Exception):
    """The handshake failed. ``by_peer``: the other side refused us, rather than we it."""

    def __init__(self, reason: Reason, detail: str, by_peer: bool = False) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.by_peer = by_peer


class State(Enum):
    SEND_NAME = "send_name"
    RECV_STATUS = "recv_status"
    RECV_CHALLENGE = "recv_challenge"
    RECV_CHALLENGE_ACK = "recv_challenge_ack"
    RECV_NAME = "recv_name"
    SEND_STATUS = "send_status"
    RECV_CHALLENGE_REPLY = "recv_challenge_reply"
    UP = "up"
    FAILED = "failed"


@dataclass(frozen=True)
class Identity:
    """Who this side is. ``creation`` tells one incarnation of a node name from the next."""

    name: str
    creation: int
    longnames: bool


@dataclass(frozen=True)
class PeerInfo:
    """Who the other side is, as it claimed (after NAME) and then proved (once UP)."""

    name: str
    creation: int
    hidden: bool
    version: int


def new_creation() -> int:
    return secrets.randbelow(_MAX_CREATION)


def _digest(cookie: Cookie, step: bytes, prover: str, verifier: str, theirs: bytes, ours: bytes) -> str:
    message = b"\0".join((b"gossipy-dist", step, prover.encode(), verifier.encode(), theirs, ours))
    return hmac.new(cookie.reveal(), message, sha256).hexdigest()


def _fields(frame: Frame, expected: FrameType) -> dict[str, Any]:
    if frame.type is not expected:
        raise HandshakeError(Reason.MALFORMED, f"expected {expected.name}, got {frame.type.name}")
    try:
        value = decode_json(frame)
    except FrameError as exc:
        raise HandshakeError(Reason.MALFORMED, str(exc)) from None
    if not isinstance(value, dict):
        raise HandshakeError(Reason.MALFORMED, f"{expected.name} is not a JSON object")
    return value


def _get(fields: dict[str, Any], key: str, kind: type[_Field], frame_type: FrameType) -> _Field:
    value = fields.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise HandshakeError(Reason.MALFORMED, f"{frame_type.name}.{key} is missing or not a {kind.__name__}")
    return value


def _hex(fields: dict[str, Any], key: str, pattern: re.Pattern[str], frame_type: FrameType) -> str:
    value = _get(fields, key, str, frame_type)
    if not pattern.match(value):
        raise HandshakeError(Reason.MALFORMED, f"{frame_type.name}.{key} is not the expected hex string")
    return value


def _name(fields: dict[str, Any], frame_type: FrameType, longnames: bool) -> str:
    name = _get(fields, "name", str, frame_type)
    try:
        long = NodeName.parse(name).long if len(name) <= _MAX_NAME else None
    except NodeNameError:
        long = None
    if long is None:
        raise HandshakeError(Reason.MALFORMED, f"{frame_type.name}.name is not a node name")
    if long != longnames:
        raise HandshakeError(Reason.NAME_MODE_MISMATCH, f"{name} is a {kind(long)} name; this node uses "
                                                        f"{kind(longnames)} names")
    return name


def _creation(fields: dict[str, Any], frame_type: FrameType) -> int:
    creation = _get(fields, "creation", int, frame_type)
    if not 0 <= creation < _MAX_CREATION:
        raise HandshakeError(Reason.MALFORMED, f"{frame_type.name}.creation is out of range")
    return creation


class _Handshake:
    state: State

    def __init__(self, me: Identity, cookie: Cookie) -> None:
        self._me = me
        self._cookie = cookie
        self._out: list[bytes] = []
        self._challenge = secrets.token_bytes(CHALLENGE_BYTES)
        self.peer: PeerInfo | None = None

    def data_to_send(self) -> bytes:
        """Bytes to write to the peer, in order; each call returns what accrued since the last."""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def receive_frame(self, frame: Frame) -> None:
        """Advances the handshake; raises HandshakeError (the peer should then be closed,
        after ``data_to_send`` has told it why)."""
        if self.state in (State.UP, State.FAILED, State.SEND_NAME, State.SEND_STATUS):
            raise self._fail(HandshakeError(Reason.MALFORMED, f"unexpected {frame.type.name} in {self.state.value}"))
        try:
            if frame.type is FrameType.REFUSE:
                raise self._refused(frame)
            self._step(frame)
        except HandshakeError as exc:
            raise self._fail(exc) from None

    def abort(self, exc: HandshakeError) -> HandshakeError:
        """Fails the handshake for a reason found outside it (bytes that are not frames);
        returns ``exc`` to raise, with the peer's REFUSE queued."""
        return self._fail(exc)

    def _step(self, frame: Frame) -> None:
        raise NotImplementedError

    def _send(self, frame_type: FrameType, value: dict[str, Any]) -> None:
        self._out.append(encode_json(frame_type, value))

    def _refused(self, frame: Frame) -> HandshakeError:
        reason = _get(_fields(frame, FrameType.REFUSE), "reason", str, FrameType.REFUSE)
        if reason not in {r.value for r in _REFUSABLE}:
            return HandshakeError(Reason.MALFORMED, "REFUSE names an unknown reason")
        return HandshakeError(Reason(reason), "refused by the peer", by_peer=True)

    def _fail(self, exc: HandshakeError) -> HandshakeError:
        # Tell the peer why, unless it told us, or it merely lost a tie it knows about.
        if self.state is not State.FAILED and not exc.by_peer and exc.reason in _REFUSABLE:
            self._send(FrameType.REFUSE, {"reason": exc.reason.value})
        self.state = State.FAILED
        return exc


class Initiator(_Handshake):
    """Node A's side. ``expect``: the name A dialed; a different answer is WRONG_NODE."""

    def __init__(self, me: Identity, cookie: Cookie, expect: str | None, hidden: bool = False) -> None:
        super().__init__(me, cookie)
        self._expect = expect
        self._hidden = hidden
        self._version = 0
        self._their_challenge = b""
        self.state = State.SEND_NAME

    def send_name(self) -> None:
        """The first step: queues NAME with our name, incarnation and protocol versions."""
        if self.state is not State.SEND_NAME:
            raise RuntimeError(f"send_name in state {self.state.value}")
        self._send(FrameType.NAME, {"name": self._me.name, "creation": self._me.creation,
                                    "versions": list(VERSIONS), "hidden": self._hidden})
        self.state = State.RECV_STATUS

    def _step(self, frame: Frame) -> None:
        if self.state is State.RECV_STATUS:
            self._recv_status(frame)
        elif self.state is State.RECV_CHALLENGE:
            self._recv_challenge(frame)
        else:
            self._recv_challenge_ack(frame)

    def _recv_status(self, frame: Frame) -> None:
        fields = _fields(frame, FrameType.STATUS)
        status = _get(fields, "status", str, FrameType.STATUS)
        if status == "nok":
            raise HandshakeError(Reason.SIMULTANEOUS, "the peer keeps another stream to us", by_peer=True)
        if status != "ok":
            raise HandshakeError(Reason.MALFORMED, "STATUS.status is neither ok nor nok")
        version = _get(fields, "version", int, FrameType.STATUS)
        if not VERSIONS[0] <= version <= VERSIONS[1]:
            raise HandshakeError(Reason.BAD_VERSION, f"the peer chose version {version}; we speak "
                                                     f"{VERSIONS[0]}..{VERSIONS[1]}")
        self._version = version
        self.state = State.RECV_CHALLENGE

    def _recv_challenge(self, frame: Frame) -> None:
        fields = _fields(frame, FrameType.CHALLENGE)
        name = _name(fields, FrameType.CHALLENGE, self._me.longnames)
        creation = _creation(fields, FrameType.CHALLENGE)
        challenge = bytes.fromhex(_hex(fields, "challenge", _HEX_CHALLENGE, FrameType.CHALLENGE))
        if self._expect is not None and name != self._expect:
            raise HandshakeError(Reason.WRONG_NODE, f"dialed {self._expect}, but {name} answered")
        self.peer = PeerInfo(name, creation, hidden=False, version=self._version)
        self._their_challenge = challenge
        self._send_challenge_reply()

    def _send_challenge_reply(self) -> None:
        assert self.peer is not None
        digest = _digest(self._cookie, b"reply", self._me.name, self.peer.name, self._their_challenge, self._challenge)
        self._send(FrameType.CHALLENGE_REPLY, {"challenge": self._challenge.hex(), "digest": digest})
        self.state = State.RECV_CHALLENGE_ACK

    def _recv_challenge_ack(self, frame: Frame) -> None:
        assert self.peer is not None
        fields = _fields(frame, FrameType.CHALLENGE_ACK)
        digest = _hex(fields, "digest", _HEX_DIGEST, FrameType.CHALLENGE_ACK)
        expected = _digest(self._cookie, b"ack", self.peer.name, self._me.name, self._challenge, self._their_challenge)
        if not hmac.compare_digest(digest, expected):
            raise HandshakeError(Reason.BAD_COOKIE, f"{self.peer.name} did not prove the cookie")
        self.state = State.UP


class Acceptor(_Handshake):
    """Node B's side. After NAME it waits in SEND_STATUS, with ``peer`` set to the claim,
    for its owner's :meth:`answer`."""

    def __init__(self, me: Identity, cookie: Cookie) -> None:
        super().__init__(me, cookie)
        self.state = State.RECV_NAME

    def _step(self, frame: Frame) -> None:
        if self.state is State.RECV_NAME:
            self._recv_name(frame)
        else:
            self._recv_challenge_reply(frame)

    def _recv_name(self, frame: Frame) -> None:
        fields = _fields(frame, FrameType.NAME)
        versions = _get(fields, "versions", list, FrameType.NAME)
        if len(versions) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in versions):
            raise HandshakeError(Reason.MALFORMED, "NAME.versions is not [lowest, highest]")
        version = min(versions[1], VERSIONS[1])
        if version < max(versions[0], VERSIONS[0]):
            raise HandshakeError(Reason.BAD_VERSION, f"the peer speaks {versions[0]}..{versions[1]}; "
                                                     f"we speak {VERSIONS[0]}..{VERSIONS[1]}")
        hidden = _get(fields, "hidden", bool, FrameType.NAME)
        name = _name(fields, FrameType.NAME, self._me.longnames)
        self.peer = PeerInfo(name, _creation(fields, FrameType.NAME), hidden=hidden, version=version)
        self.state = State.SEND_STATUS

    def answer(self, refusal: Reason | None) -> None:
        """send_status: None lets the peer in (and sends our challenge); SIMULTANEOUS says
        "nok" (we keep another stream to it); any other reason refuses it and raises."""
        if self.state is not State.SEND_STATUS:
            raise RuntimeError(f"answer in state {self.state.value}")
        assert self.peer is not None
        if refusal is Reason.SIMULTANEOUS:
            self._send(FrameType.STATUS, {"status": "nok"})
            raise self._fail(HandshakeError(refusal, "we keep another stream to this peer"))
        if refusal is not None:
            raise self._fail(HandshakeError(refusal, f"{self.peer.name} is not let in"))
        self._send(FrameType.STATUS, {"status": "ok", "version": self.peer.version})
        self._send(FrameType.CHALLENGE, {"name": self._me.name, "creation": self._me.creation,
                                         "challenge": self._challenge.hex()})
        self.state = State.RECV_CHALLENGE_REPLY

    def _recv_challenge_reply(self, frame: Frame) -> None:
        assert self.peer is not None
        fields = _fields(frame, FrameType.CHALLENGE_REPLY)
        their_challenge = bytes.fromhex(_hex(fields, "challenge", _HEX_CHALLENGE, FrameType.CHALLENGE_REPLY))
        digest = _hex(fields, "digest", _HEX_DIGEST, FrameType.CHALLENGE_REPLY)
        expected = _digest(self._cookie, b"reply", self.peer.name, self._me.name, self._challenge, their_challenge)
        if not hmac.compare_digest(digest, expected):
            raise HandshakeError(Reason.BAD_COOKIE, f"{self.peer.name} did not prove the cookie")
        self._send(FrameType.CHALLENGE_ACK, {"digest": _digest(self._cookie, b"ack", self._me.name, self.peer.name,
                                                               their_challenge, self._challenge)})
        self.state = State.UP

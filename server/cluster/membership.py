"""The node: the one owner of the connection table, like Erlang's net_kernel.

It listens on the distribution port, dials the nodes it wants, settles simultaneous dials,
keeps the mesh full, and says in the log when a node comes up or goes down.

* The table: ``up`` (name -> Peer), plus handshakes in progress in each direction (dialing,
  accepting). Every change happens between two awaits, so a decision about a name always sees
  the whole table.
* One stream per pair: when both nodes dial at once, the stream dialed by the node with the
  smaller name is kept; the other side answers "nok" to the larger one's dial. Both sides
  apply the same rule to the same two names, so they agree without another message. A second
  connection from a node already up (same incarnation) also gets "nok"; from another
  incarnation of that name it is a duplicate and refused.
* Full mesh, transitively: when a stream comes up, each side sends the members it knows and
  dials those it lacks; a new node that lists one member soon links to all, and old nodes
  accept it with no change of configuration.
* Wanted nodes (configured, listed by DNS, or seen as members: :class:`Source`) that are down
  are dialed again with capped exponential backoff, so a restarted node or a healed partition
  re-forms the mesh by itself. A member that left cleanly and is neither configured nor listed
  is no longer wanted; one that was only seen is forgotten after ``FORGET_AFTER`` seconds down.
* DNS discovery (:class:`~.discovery.DnsPoller`) calls :meth:`Node.want` and
  :meth:`Node.unwant`. A node that vanished from the answer is not disconnected (liveness
  judges a live stream, and a DNS hiccup must not split the cluster), but once it is down it
  is not dialed again: DNS said it is gone, and its address may soon be another program's.

Each connection is a :class:`~.peer.Peer`. An incoming one passes :mod:`.admission` before its
handshake starts; a hidden one (a ``ping``/``nodes``/``broadcast`` asker) is handed to :func:`.control.answer`
once it has proved the cookie.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from ..nodename import NodeName, NodeNameError
from ..settings import Distribution
from . import control, discovery, tls
from .admission import Admission, Verdict
from .framing import Frame, FrameError, FrameType, decode_json, encode, encode_json
from .handshake import Acceptor, HandshakeError, Identity, Initiator, PeerInfo, Reason, new_creation
from .peer import MAX_QUEUE, Peer, Unreachable, dial

log = logging.getLogger("gossipy.cluster.membership")

# Connect plus handshake, a little under Erlang's net_setuptime (7 s): a stalled stranger
# should not hold a handshake slot for long.
HANDSHAKE_TIMEOUT = 5.0
# Redial delays: 0.1, 0.2, 0.4 ... then every 3 s (each jittered to 50-100 %), so a restarted
# node or a healed partition is back within about 3 s, while a node that is gone for good
# costs one refused connect per peer every few seconds.
BACKOFF_BASE = 0.1
BACKOFF_CAP = 3.0
FORGET_AFTER = 600.0
LEAVE_TIMEOUT = 2.0
MAX_MEMBERS = 10_000
# The failed handshakes that count against an address in admission's throttle.
_COUNTED = frozenset({Reason.BAD_COOKIE, Reason.MALFORMED, Reason.TIMEOUT, Reason.BAD_VERSION,
                      Reason.NAME_MODE_MISMATCH})


class BootError(Exception):
    """The node cannot start: its port is taken, or sync_nodes_mandatory were not reached."""


class Source(enum.IntEnum):
    """Why a node is wanted, in rising authority: a stronger reason replaces a weaker one, so
    once DNS has named a node, DNS (not a peer's member list) decides whether it is dialed."""

    MEMBER = 1  # a peer named it, or it connected: redialed until it leaves or FORGET_AFTER
    VANISHED = 2  # DNS listed it and no longer does: not redialed once down
    DISCOVERED = 3  # DNS lists it: redialed while listed
    CONFIGURED = 4  # sync_nodes: redialed for ever


@dataclass(eq=False)
class _Want:
    name: str
    source: Source
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    down_since: float = field(default_factory=time.monotonic)
    last_failure: str | None = None


class Node:
    """This node's membership of the cluster (see the module docstring).

    ``Node(distribution)``; ``await start()``; ``connected_nodes()``; ``await stop()``. Broadcasts
    go out through :meth:`broadcast` (or :meth:`send` to one node); those from peers go to the
    receiver set with :meth:`set_receiver`, and node up/down to :meth:`set_watcher` (the pubsub
    adapter). The keyword arguments exist for tests.
    """

    def __init__(self, distribution: Distribution, *, handshake_timeout: float = HANDSHAKE_TIMEOUT,
                 max_queue: int = MAX_QUEUE, backoff: tuple[float, float] = (BACKOFF_BASE, BACKOFF_CAP),
                 resolver: discovery.Resolver = discovery.system_resolver) -> None:
        if distribution.node is None or distribution.cookie is None:
            raise ValueError("a cluster Node needs a node name and a cookie (settings.distribution)")
        self.name: str = distribution.node
        # Where peers dial this node: dist_port, or a worker's port past it (discovery).
        self.port = discovery.address(self.name, distribution)[1]
        self._dist = distribution
        self._cookie = distribution.cookie
        self._me = Identity(self.name, new_creation(), distribution.longnames)
        self._handshake_timeout = handshake_timeout
        self._max_queue = max_queue
        self._backoff = backoff
        self._admission = Admission()
        # Dial from the address we listen on, so peers (and their logs and throttle) see
        # 127.0.0.2 as 127.0.0.2, not as whatever the routing table picks.
        own = discovery.own_address(distribution)
        self._source = (own, 0) if own else None
        self._server: asyncio.Server | None = None
        self._stopping = False
        self._up: dict[str, Peer] = {}
        self._dialing: set[str] = set()
        self._accepting: dict[str, Peer] = {}
        self._handshakes: set[asyncio.Task[None]] = set()
        self._wanted: dict[str, _Want] = {}
        self._up_changed = asyncio.Event()
        self._receiver: Callable[[str, bytes], None] | None = None
        self._watcher: tuple[Callable[[PeerInfo], None], Callable[[PeerInfo, bool], None]] | None = None
        self._publisher: control.Publish | None = None
        self._tls: tls.Contexts | None = None
        self._dns = (discovery.DnsPoller(distribution, self.want, self.unwant, resolver)
                     if distribution.dns_cluster_query else None)
        self._polling: asyncio.Task[None] | None = None
        # Handshakes this node refused, or was refused in, by Reason value (a lost tie of a
        # simultaneous dial is not a refusal); every reason is there from the start, so a
        # scrape shows the first refusal as a change from 0.
        self.refusals: Counter[str] = Counter({r.value: 0 for r in Reason if r is not Reason.SIMULTANEOUS})

    # ---- the API -------------------------------------------------------------------------

    async def start(self) -> None:
        """Listens on the distribution port, dials the configured nodes and those of the first
        DNS answer, and waits for them (sync_nodes_*); raises BootError if the port is taken or
        mandatory nodes are missing."""
        host, port = self._dist.listen_address, self.port
        if self._dist.tls is not None:
            try:
                self._tls = tls.contexts(self._dist.tls)
            except tls.TlsError as exc:
                raise BootError(f"{self.name}: {exc}") from None
        try:
            # With TLS, asyncio completes the TLS handshake before _connected (within the same
            # timeout); a stranger who fails it is dropped without a word, as by any TLS server.
            self._server = await asyncio.get_running_loop().create_server(
                self._connection, host, port, ssl=self._tls.server if self._tls else None,
                ssl_handshake_timeout=self._handshake_timeout if self._tls else None)
        except OSError as exc:
            raise BootError(f"{self.name}: cannot listen for peer nodes on {host}:{port}: "
                            f"{exc.strerror or exc}") from None
        log.info("%s listening for peer nodes on %s:%d%s", self.name, host, port, " (TLS)" if self._tls else "")
        for name in discovery.configured_nodes(self._dist):
            self._want(name, Source.CONFIGURED)
        await self._boot_sync()
        if self._dns is not None:
            self._polling = asyncio.create_task(self._dns.run(), name="dns_cluster_query")

    async def stop(self) -> None:
        """Tells every peer this node is leaving (they mark it down at once) and closes."""
        if self._stopping:
            return
        self._stopping = True
        if self._server is not None:
            self._server.close()
        tasks = [w.task for w in self._wanted.values() if w.task is not None] + list(self._handshakes)
        if self._polling is not None:
            tasks.append(self._polling)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(peer.leave(LEAVE_TIMEOUT) for peer in list(self._up.values())))
        if self._server is not None:
            await self._server.wait_closed()
        log.info("%s left the cluster", self.name)

    def connected_nodes(self) -> list[str]:
        """The names of the peer nodes that are up, sorted."""
        return sorted(self._up)

    def send_queues(self) -> dict[str, int]:
        """Bytes waiting to be sent to each peer node that is up."""
        return {name: peer.queued_bytes for name, peer in self._up.items()}

    @property
    def creation(self) -> int:
        """This incarnation's creation (new at each boot), as peers see it in the handshake."""
        return self._me.creation

    @property
    def is_connected(self) -> bool:
        """True if at least one peer node is up (cheaper than ``connected_nodes``)."""
        return bool(self._up)

    def broadcast(self, payload: bytes) -> None:
        """Sends one BROADCAST frame, built once, to every up peer; raises FrameError if it
        is larger than a peer accepts."""
        if not self._up:
            return
        frame = encode(FrameType.BROADCAST, payload)
        # A copy: a peer whose queue overflows is dropped from the table mid-loop.
        for peer in tuple(self._up.values()):
            peer.send(frame)

    def send(self, name: str, payload: bytes) -> None:
        """Sends one BROADCAST frame to the peer ``name`` only, if it is up (ordered with the
        broadcasts sent to it); raises FrameError like :meth:`broadcast`."""
        peer = self._up.get(name)
        if peer is not None:
            peer.send(encode(FrameType.BROADCAST, payload))

    def set_watcher(self, up: Callable[[PeerInfo], None], down: Callable[[PeerInfo, bool], None]) -> None:
        """``up(info)`` when a peer node comes up, before any of its frames is received;
        ``down(info, left)`` when it goes down, ``left`` if it said it was leaving (a clean stop)."""
        self._watcher = (up, down)

    def set_receiver(self, receiver: Callable[[str, bytes], None]) -> None:
        """``receiver(sender_name, payload)`` gets each broadcast from a peer, in the order sent."""
        self._receiver = receiver

    def set_publisher(self, publisher: control.Publish) -> None:
        """``publisher(message)`` broadcasts a message that ``bin/gossipy broadcast`` handed to
        this node, or raises ValueError saying why it will not."""
        self._publisher = publisher

    def want(self, name: str) -> None:
        """Discovery lists ``name``: dial it now, and again whenever it is down, while listed."""
        self._want(name, Source.DISCOVERED)
        self._nudge(name)

    def unwant(self, name: str) -> None:
        """Discovery no longer lists ``name``: it stays connected while up (liveness judges
        it); once down it is not dialed again. A configured node stays wanted."""
        want = self._wanted.get(name)
        if want is not None and want.source is Source.DISCOVERED:
            want.source = Source.VANISHED
            want.changed.set()

    # ---- boot ------------------------------------------------------------------------------

    async def _boot_sync(self) -> None:
        configured = discovery.configured_nodes(self._dist)
        listed = list(configured)
        timeout_ms = self._dist.sync_nodes_timeout_ms
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                # The first answer's nodes are waited for like sync_nodes_optional; a query that
                # finds none (the first node of a cluster) lets the boot go on at once.
                if self._dns is not None:
                    listed += [name for name in await self._dns.poll() if name not in listed]
                if not listed:
                    return
                while True:
                    self._up_changed.clear()
                    if all(name in self._up for name in listed):
                        return
                    await self._up_changed.wait()
        except TimeoutError:
            pass
        missing = [name for name in listed if name not in self._up]
        mandatory = [name for name in missing if name in self._dist.sync_nodes_mandatory]
        if mandatory:
            detail = ", ".join(f"{name} ({self._failure(name)})" for name in mandatory)
            await self.stop()
            raise BootError(f"{self.name}: sync_nodes_mandatory not connected within {timeout_ms} ms "
                            f"(sync_nodes_timeout): {detail}")
        for name in missing:
            log.warning("%s: %s not connected within %d ms (%s); serving without it, still dialing",
                        "sync_nodes_optional" if name in configured else "dns_cluster_query", name, timeout_ms,
                        self._failure(name))

    def _failure(self, name: str) -> str:
        want = self._wanted.get(name)  # a listed node that DNS dropped meanwhile is no longer wanted
        return (want.last_failure if want else None) or "no answer"

    # ---- wanted nodes: dial, and dial again --------------------------------------------------

    def _want(self, name: str, source: Source) -> _Want:
        want = self._wanted.get(name)
        if want is None:
            want = self._wanted[name] = _Want(name, source)
            if not self._stopping:
                want.task = asyncio.create_task(self._keep_connected(want), name=f"keep-connected {name}")
        elif source > want.source:
            want.source = source
        return want

    async def _keep_connected(self, want: _Want) -> None:
        base, cap = self._backoff
        delay = base
        name = want.name
        while not self._stopping:
            want.changed.clear()
            if name in self._up or name in self._accepting:
                await want.changed.wait()
                continue
            if want.source is Source.VANISHED:
                log.info("no longer dialing %s: down, and no longer in the DNS answer", name)
                del self._wanted[name]
                return
            if want.source is Source.MEMBER and time.monotonic() - want.down_since > FORGET_AFTER:
                log.info("forgetting %s: down for over %d s and not configured", name, FORGET_AFTER)
                del self._wanted[name]
                return
            if await self._dial(want):
                delay = base
                continue
            # Woken early when the node connects to us or a peer names it as a member.
            try:
                await asyncio.wait_for(want.changed.wait(), delay * random.uniform(0.5, 1.0))
            except TimeoutError:
                pass
            delay = min(delay * 2, cap)

    async def _dial(self, want: _Want) -> bool:
        name = want.name
        host, port = discovery.address(name, self._dist)
        self._dialing.add(name)
        try:
            peer = await dial(host, port, Initiator(self._me, self._cookie, expect=name),
                              timeout=self._handshake_timeout, contexts=self._tls, local_addr=self._source)
        except HandshakeError as exc:
            failure = f"{'refused by the peer' if exc.by_peer else 'refused'}: {exc}"
            # A lost tie is routine; a refusal means a misconfigured cluster.
            if exc.reason is Reason.SIMULTANEOUS:
                level = logging.DEBUG
            else:
                level = logging.WARNING
                self.refusals[exc.reason.value] += 1
        except Unreachable as exc:
            # TLS that does not match is a misconfigured cluster; a node that is not running
            # (yet, or any more) is routine while nodes start and stop.
            failure, level = (str(exc), logging.WARNING) if exc.tls else (f"unreachable ({exc})", logging.INFO)
        except TimeoutError:
            failure, level = f"no complete handshake within {self._handshake_timeout:g} s", logging.INFO
        else:
            self._peer_up(peer, "dialed")
            return True
        finally:
            self._dialing.discard(name)
        # Once per streak of the same failure: a node down for an hour is not an hour of log.
        log.log(logging.DEBUG if failure == want.last_failure else level,
                "cannot connect to %s at %s:%d: %s", name, host, port, failure)
        want.last_failure = failure
        return False

    # ---- incoming connections ------------------------------------------------------------

    def _connection(self) -> Peer:
        return Peer(Acceptor(self._me, self._cookie), decide=self._admit, on_connected=self._connected)

    def _connected(self, peer: Peer) -> None:
        peername = peer.extra("peername")
        if not peername:  # reset before asyncio could ask for its address: nothing to refuse
            peer.close("reset at once")
            return
        host = peername[0]
        verdict = Verdict.REFUSE if self._stopping else self._admission.admit(host, peer.address)
        if verdict is Verdict.DROP:
            peer.close("too many handshakes in progress")
        elif verdict is Verdict.REFUSE:
            self.refusals[Reason.NOT_ALLOWED.value] += 1
            peer.refuse(Reason.NOT_ALLOWED, "not admitted")
        else:
            task = asyncio.create_task(self._accept(peer, host), name=f"accept {peer.address}")
            self._handshakes.add(task)

    async def _accept(self, peer: Peer, host: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            async with asyncio.timeout(self._handshake_timeout):
                info = await peer.handshaken
        except HandshakeError as exc:
            self._refused(peer, host, exc)
            return
        except TimeoutError:
            self._refused(peer, host, HandshakeError(
                Reason.TIMEOUT, f"no complete handshake within {self._handshake_timeout:g} s "
                                f"(stalled in {peer.handshake.state.value})"))
            peer.close("handshake timeout")
            return
        except BaseException:
            peer.close("this node is stopping")
            raise
        finally:
            self._handshakes.discard(task)
            self._admission.finished(host)
            claim = peer.handshake.peer
            if claim is not None and self._accepting.get(claim.name) is peer:
                del self._accepting[claim.name]
                self._nudge(claim.name)
        if info.hidden:
            await control.answer(peer, lambda: [self.name] + self.connected_nodes(), self._publisher,
                                 self._handshake_timeout)
        else:
            self._peer_up(peer, "accepted")

    def _admit(self, peer: Peer, claim: PeerInfo) -> Reason | None:
        if self._stopping:
            return Reason.NOT_ALLOWED
        try:
            host, _ = discovery.address(claim.name, self._dist)
        except NodeNameError as exc:
            raise HandshakeError(Reason.NOT_ALLOWED, str(exc)) from None
        if self._tls is not None and not tls.names_host(peer.extra("peercert"), host):
            raise HandshakeError(Reason.NOT_ALLOWED, f"its certificate does not name {host}, the "
                                                     f"host of the name it claims")
        if claim.hidden:
            return None
        name = claim.name
        if name == self.name:
            return Reason.DUPLICATE_NAME
        current = self._up[name].info if name in self._up else (
            self._accepting[name].handshake.peer if name in self._accepting else None)
        if current is not None:
            return Reason.SIMULTANEOUS if current.creation == claim.creation else Reason.DUPLICATE_NAME
        if name in self._dialing and self.name < name:
            return Reason.SIMULTANEOUS
        self._accepting[name] = peer
        return None

    def _refused(self, peer: Peer, host: str, exc: HandshakeError) -> None:
        claim = peer.handshake.peer
        who = f"{peer.address} (claims {claim.name})" if claim else peer.address
        # A lost tie, or a connection that closed before it said who it is: not refusals.
        ended = exc.reason is Reason.SIMULTANEOUS or (exc.reason is Reason.CLOSED and claim is None)
        if ended:
            log.debug("connection from %s ended: %s", who, exc)
        elif self._admission.blocked(host):  # its throttling was logged; not each of its failures
            log.debug("refused connection from %s (throttled): %s", who, exc)
        elif exc.by_peer:
            log.warning("connection from %s failed: it refused us: %s", who, exc.reason.value)
        else:
            log.warning("refused connection from %s: %s", who, exc)
        if not ended:
            self.refusals[exc.reason.value] += 1
        if exc.reason in _COUNTED:
            self._admission.failed(host)

    # ---- up and down ---------------------------------------------------------------------

    def _peer_up(self, peer: Peer, how: str) -> None:
        info = peer.info
        if self._stopping:
            peer.close("this node is stopping")
            return
        if info.name in self._up:
            # The table's rules make this unreachable; keep the invariant anyway.
            log.warning("closing a second stream to %s (%s)", info.name, how)
            peer.close("a second stream")
            return
        self._up[info.name] = peer
        want = self._want(info.name, Source.MEMBER)
        want.last_failure = None
        log.info("node up: %s at %s (%s)", info.name, peer.address, how)
        if self._watcher is not None:
            self._watcher[0](info)
        peer.start(ticktime=self._dist.net_ticktime, max_queue=self._max_queue,
                   on_frame=self._on_frame, on_down=self._on_down)
        peer.send(encode_json(FrameType.MEMBERS, {"nodes": [n for n in self._up if n != info.name]}))
        self._up_changed.set()
        want.changed.set()

    def _on_down(self, peer: Peer, reason: str) -> None:
        if self._up.get(peer.name) is not peer:
            return
        del self._up[peer.name]
        log.info("node down: %s: %s", peer.name, reason)
        if self._watcher is not None:
            self._watcher[1](peer.info, peer.left)
        want = self._wanted.get(peer.name)
        if want is None:
            return
        if peer.left and want.source is Source.MEMBER:
            if want.task is not None:
                want.task.cancel()
            del self._wanted[peer.name]
            return
        want.down_since = time.monotonic()
        want.changed.set()

    def _on_frame(self, peer: Peer, frame: Frame) -> None:
        if frame.type is FrameType.BROADCAST:
            if self._receiver is not None:
                self._receiver(peer.name, frame.payload)
            return
        try:
            nodes = decode_json(frame).get("nodes")
        except (FrameError, AttributeError):
            nodes = None
        if not isinstance(nodes, list) or len(nodes) > MAX_MEMBERS:
            log.warning("ignored a malformed member list from %s", peer.name)
            return
        for name in nodes:
            if not self._valid_member(name):
                log.warning("ignored member %r from %s: not a node name of this cluster's kind", name, peer.name)
            elif name != self.name:
                self._want(name, Source.MEMBER)
                self._nudge(name)

    def _valid_member(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            parsed = NodeName.parse(name)
            parsed.port(self._dist.port)  # a worker number past the last port: not dialable
        except NodeNameError:
            return False
        return parsed.long == self._dist.longnames

    def _nudge(self, name: str) -> None:
        want = self._wanted.get(name)
        if want is not None:
            want.changed.set()

"""Node names: ``NAME@HOST``, as Erlang spells them.

A *long* name's host is dotted or an IPv6 address (``gossipy@10.1.2.3``, ``gossipy@ws1.example``);
a *short* name's is neither (``gossipy@ws1``). A cluster uses one kind only, so a name of the
other kind is refused wherever it appears (settings, a peer's handshake, a member list). The
host part is where the node is dialed; the port is the cluster's ``dist_port``, moved by a
*worker* suffix: a host running several node processes (``node.workers``) names its first
``gossipy@ws1`` and the others ``gossipy-2@ws1``, ``gossipy-3@ws1``..., and worker K listens on
``dist_port + K - 1``. So any node can dial any name it learns, with no port in the member
list, and the first worker answers to the name a one-process node has.

This module is the one place that knows the grammar; settings and the cluster word their own
errors around :class:`NodeNameError`.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_HOST = re.compile(r"^[A-Za-z0-9_.:-]+$")
_WORKER = re.compile(r"^(.+)-([1-9][0-9]*)$")
MAX_PORT = 65535


class NodeNameError(ValueError):
    """Text that is not a node name; the message shows the text."""


def _is_long_host(host: str) -> bool:
    return "." in host or ":" in host


def kind(long: bool) -> str:
    """"long" or "short", for messages."""
    return "long" if long else "short"


def is_long(text: str) -> bool:
    """Whether ``text`` would be a long name, without checking it (a bare NAME is short): how
    a node name alone tells the naming mode."""
    return _is_long_host(text.partition("@")[2])


def is_ip(host: str) -> bool:
    """True if ``host`` is an IPv4 or IPv6 address rather than a host name."""
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return True
    except OSError:
        return False


@dataclass(frozen=True)
class NodeName:
    """A checked ``NAME@HOST``; ``str()`` gives it back as written."""

    name: str
    host: str

    @classmethod
    def parse(cls, text: str) -> NodeName:
        """Raises NodeNameError unless ``text`` is NAME@HOST (letters, digits, ``_`` and ``-``
        before the ``@``; those, dots and colons after it)."""
        name, at, host = text.partition("@")
        if not at or not _NAME.match(name) or not _HOST.match(host):
            raise NodeNameError(f"{text!r} is not a node name of the form NAME@HOST")
        return cls(name, host)

    @property
    def long(self) -> bool:
        return _is_long_host(self.host)

    @property
    def worker(self) -> int:
        """Which worker of its host this name is: K for ``NAME-K`` (K >= 2), else 1."""
        match = _WORKER.match(self.name)
        return int(match.group(2)) if match and int(match.group(2)) >= 2 else 1

    @property
    def first(self) -> NodeName:
        """The name of worker 1 of this name's host: the node's name, as configured."""
        worker = self.worker
        return self if worker == 1 else NodeName(self.name[:-len(f"-{worker}")], self.host)

    def for_worker(self, index: int) -> NodeName:
        """The name of worker ``index`` (from 1) of this name's host."""
        first = self.first
        return first if index == 1 else NodeName(f"{first.name}-{index}", self.host)

    def port(self, base: int) -> int:
        """The distribution port of this node in a cluster whose ``dist_port`` is ``base``;
        raises NodeNameError if its worker number puts it past the last port."""
        port = base + self.worker - 1
        if port > MAX_PORT:
            raise NodeNameError(f"{self}: worker {self.worker}'s port, {base} + {self.worker - 1}, is over {MAX_PORT}")
        return port

    def __str__(self) -> str:
        return f"{self.name}@{self.host}"

"""Node names: ``NAME@HOST``, as Erlang spells them.

A *long* name's host is dotted or an IPv6 address (``gossipy@10.1.2.3``, ``gossipy@ws1.example``);
a *short* name's is neither (``gossipy@ws1``). A cluster uses one kind only, so a name of the
other kind is refused wherever it appears (settings, a peer's handshake, a member list). The
host part is where the node is dialed.

This module is the one place that knows the grammar; settings and the cluster word their own
errors around :class:`NodeNameError`.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_HOST = re.compile(r"^[A-Za-z0-9_.:-]+$")


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

    def __str__(self) -> str:
        return f"{self.name}@{self.host}"

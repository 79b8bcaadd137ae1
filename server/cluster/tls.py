"""TLS for the peer streams (``node.tls``): the SSL contexts, and whose certificate is whose.

Configuration only: with ``node.tls`` set, a node listens and dials with TLS, and both ends
present a certificate signed by the cluster's CA (mutual authentication). A dialer checks
that the certificate names the host it dialed (the host of the node name: an IP address or a
DNS name, in the certificate's subjectAltName), as HTTPS does; an acceptor checks that the
certificate names the host of the node name the dialer then claims. The cookie handshake
still runs inside, so a node needs both a certificate of the CA and the cookie.

Every node of a cluster must have ``node.tls`` or none: a node without it cannot talk to one
with it (each says so in its log).
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from typing import Any

from ..settings import Tls


class TlsError(Exception):
    """The TLS settings cannot be used; the message names the file and says why."""


@dataclass(frozen=True)
class Contexts:
    server: ssl.SSLContext
    client: ssl.SSLContext


def contexts(tls: Tls) -> Contexts:
    """The listening and the dialing context for these settings; raises TlsError."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    for context in (server, client):
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        _load(context.load_verify_locations, "node.tls.cafile", tls.cafile)
        _load(context.load_cert_chain, "node.tls.certfile and keyfile", tls.certfile, tls.keyfile)
    return Contexts(server, client)


def _load(load: Any, what: str, *paths: str) -> None:
    try:
        load(*paths)
    except FileNotFoundError as exc:
        raise TlsError(f"{what}: {exc.filename or paths[0]}: no such file") from None
    except (ssl.SSLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        raise TlsError(f"{what}: cannot use {', '.join(paths)}: {reason}") from None


def names_host(peercert: dict[str, Any] | None, host: str) -> bool:
    """True if a verified peer certificate's subjectAltName names ``host`` (an IP address, or
    a DNS name, which may match a ``*.`` wildcard in its first label)."""
    if not peercert:
        return False
    try:
        wanted_ip: Any = ipaddress.ip_address(host)
    except ValueError:
        wanted_ip = None
    for kind, value in peercert.get("subjectAltName", ()):
        if kind == "IP Address" and wanted_ip is not None:
            try:
                if ipaddress.ip_address(value.strip()) == wanted_ip:
                    return True
            except ValueError:
                continue
        elif kind == "DNS" and wanted_ip is None and _dns_match(value.lower(), host.lower()):
            return True
    return False


def _dns_match(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        first, _, rest = host.partition(".")
        return bool(first) and rest == pattern[2:]
    return pattern == host


def describe_ssl_error(exc: ssl.SSLError) -> str:
    """"the peer's certificate is not accepted (self-signed certificate)" rather than OpenSSL's
    tuple; a hint where the other side most likely speaks no TLS."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: the peer's certificate is not accepted ({exc.verify_message})"
    reason = exc.reason or str(exc)
    hint = " (does the peer have node.tls?)" if reason == "WRONG_VERSION_NUMBER" else ""
    return f"TLS: {reason.replace('_', ' ').lower()}{hint}"

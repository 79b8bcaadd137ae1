"""A real DNS server for tests (Debian's dnsmasq on a loopback address), and the mount
namespace that makes the system resolver ask it.

The nodes resolve ``kernel.dns_cluster_query`` as production does, through getaddrinfo, which
only asks /etc/resolv.conf's servers, on port 53. So dnsmasq serves port 53 on an address of
its own (127.53.x.y), and each node process starts in a private mount namespace
(``unshare --mount``, root only) where /etc/resolv.conf names that address and
/etc/nsswitch.conf says ``hosts: files dns`` (no mDNS, no systemd-resolved in the way). The
machine's own files are untouched; ``unshare`` execs the node, so its PID is the node's::

    with DnsServer(tmp_path) as dns:
        dns.set({"nodes.gossipy.test": ["127.0.0.2", "127.0.0.3"]})   # SIGHUP, then re-read
        ...  # a NodeProcesses whose command_prefix(index) is dns.resolving_prefix()

dnsmasq is stopped by its PID when the ``with`` block ends.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
from pathlib import Path

from support.requirements import need, require
from support.server_process import wait_until


def _free_dns_address() -> str:
    """A loopback address whose port 53 nobody holds (other test runs pick their own)."""
    while True:
        candidate = f"127.53.{random.randint(0, 255)}.{random.randint(1, 254)}"
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind((candidate, 53))
            return candidate
        except OSError:
            continue


class DnsServer:
    """dnsmasq answering A records from a hosts file the test rewrites (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        require(os.geteuid() == 0, "a node's own /etc/resolv.conf (unshare --mount) needs root")
        need("unshare", "util-linux")
        self._dnsmasq = need("dnsmasq", "apt-get install dnsmasq-base")
        self.directory = directory
        self.address = _free_dns_address()
        self.hosts = directory / "dns-hosts"
        self.log_path = directory / "dnsmasq.log"
        self._reads = 0
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "DnsServer":
        self.hosts.write_text("")
        (self.directory / "resolv.conf").write_text(f"nameserver {self.address}\n")
        (self.directory / "nsswitch.conf").write_text("hosts: files dns\n")
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                [self._dnsmasq, "--keep-in-foreground", "--no-resolv", "--no-hosts", f"--addn-hosts={self.hosts}",
                 f"--listen-address={self.address}", "--bind-interfaces", "--port=53", "--pid-file=",
                 "--log-facility=-", "--user=root", "--local-ttl=0"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self._await_read()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGTERM)
            self._proc.wait(5)

    def set(self, records: dict[str, list[str]]) -> None:
        """Replaces every A/AAAA record: name -> addresses. Returns once dnsmasq re-read them."""
        self.hosts.write_text("".join(f"{ip} {name}\n" for name, ips in records.items() for ip in ips))
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGHUP)
        self._await_read()

    def resolving_prefix(self) -> list[str]:
        """The command prefix that runs a program with this server as its only resolver."""
        script = ('mount --bind "$1" /etc/resolv.conf && mount --bind "$2" /etc/nsswitch.conf && shift 2 '
                  '&& exec "$@"')
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                str(self.directory / "resolv.conf"), str(self.directory / "nsswitch.conf")]

    def _await_read(self) -> None:
        self._reads += 1

        def read() -> bool:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise AssertionError(f"dnsmasq exited with {self._proc.returncode}:\n{self.log_path.read_text()}")
            return self.log_path.read_text().count(f"read {self.hosts}") >= self._reads

        wait_until(read, 5.0, "dnsmasq to read its hosts file")

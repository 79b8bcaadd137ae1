"""A test CA made with the openssl command (Debian's openssl package), and node certificates of it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .requirements import need


class Certificates:
    """A CA (a key and a self-signed certificate) in ``folder``, and node certificates of it."""

    def __init__(self, folder: Path, name: str) -> None:
        self.openssl = need("openssl", "apt-get install openssl")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.key, self.cert = folder / "ca.key", folder / "ca.pem"
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                  "-keyout", self.key, "-out", self.cert, "-days", "2", "-subj", f"/CN={name}")

    def node(self, host: str) -> dict[str, str]:
        """node.tls for a node whose certificate names ``host`` (its subjectAltName)."""
        key, csr, cert = (self.folder / f"{host}.{ext}" for ext in ("key", "csr", "pem"))
        extensions = self.folder / f"{host}.ext"
        extensions.write_text(f"subjectAltName=IP:{host}\nbasicConstraints=CA:FALSE\n"
                              f"keyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n")
        self._run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                  "-keyout", key, "-out", csr, "-subj", f"/CN=gossipy@{host}")
        self._run("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key, "-CAcreateserial",
                  "-out", cert, "-days", "2", "-extfile", extensions)
        return {"certfile": str(cert), "keyfile": str(key), "cafile": str(self.cert)}

    def _run(self, *args: object) -> None:
        done = subprocess.run([self.openssl, *map(str, args)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr

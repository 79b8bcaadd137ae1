"""Mints a connect token for one user of the demo, as your login service would. (Not named
token.py: run as a script, that would shadow the standard library's token module.)

    GOSSIPY_JWT_SECRET=... python3 examples/notifications/mint_token.py 42        # prints the token

The token is a JWT signed (HS256) with the secret the node checks tokens with (``auth`` in
this folder's vm.yml), and says: this is user 42 (``sub``), who may join ``user:42`` and no
other topic (``topics``), for the next hour (``exp``). phoenix.js sends it when it connects:
``new Socket("/socket", {params: {token}})``. PyJWT is gossipy's own dependency.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jwt

SECRET_VARIABLE = "GOSSIPY_JWT_SECRET"


def mint(secret: str, user_id: str, ttl: float = 3600.0) -> str:
    now = int(time.time())
    claims = {"sub": user_id, "topics": [f"user:{user_id}"], "iat": now, "exp": now + int(ttl)}
    return jwt.encode(claims, secret, algorithm="HS256")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("user_id")
    parser.add_argument("--ttl", type=float, default=3600.0, help="seconds the token is valid (default: %(default)s)")
    args = parser.parse_args()
    secret = os.environ.get(SECRET_VARIABLE)
    if not secret:
        print(f"mint_token.py: set {SECRET_VARIABLE} to the node's token secret", file=sys.stderr)
        return 2
    print(mint(secret, args.user_id, args.ttl))
    return 0


if __name__ == "__main__":
    sys.exit(main())

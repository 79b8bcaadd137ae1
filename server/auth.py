"""Connect tokens: a JWT, checked with PyJWT against a configured secret, becomes the
connection's assigns and the rule for which topics it may join.

    verifier = TokenVerifier(secret, algorithms=("HS256",))
    identity = verifier.verify(token)            # AuthError(reason) when refused
    identity.assigns                             # the claims, and "sub" as "user_id"
    identity.may_join("room:lobby")              # the token's "topics" claim, if any

The algorithms come from configuration only, never from the token's header, so an ``alg:
none`` token or one signed with another algorithm is refused as a bad signature. ``exp``,
``nbf`` and ``iat`` are honoured with a small leeway for clock skew between the issuer and
the nodes. A refusal's message names its reason and never the token or the secret, so it can
be logged as is; ``redact_uri`` does the same for a request URI that carries a token.

Pure: no I/O, nothing of Tornado or of the cluster.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote_plus

import jwt

# The HMAC algorithms a secret can verify, each with the shortest secret it accepts (RFC 7518,
# 3.2: at least the size of the hash output).
ALGORITHMS: Mapping[str, int] = MappingProxyType({"HS256": 32, "HS384": 48, "HS512": 64})
DEFAULT_LEEWAY = 5.0  # seconds
TOPICS_CLAIM = "topics"


class Reason(enum.Enum):
    """Why a connect token was refused (the value is what logs and metrics show)."""

    MISSING = "missing"
    MALFORMED = "malformed"
    EXPIRED = "expired"
    BAD_SIGNATURE = "bad_signature"  # also: an algorithm the configuration does not allow (none)
    NOT_YET_VALID = "not_yet_valid"
    BAD_CLAIMS = "bad_claims"


class AuthError(Exception):
    """A refused connect token. Its message (``reason: detail``) is safe to log: the details
    are fixed sentences, never the token, a claim's value or the secret."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class TopicRule:
    """Which topics a connection may join: any (no ``topics`` claim), or exactly the listed
    topics and those starting with a listed ``prefix:*`` pattern's ``prefix:``."""

    exact: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    any: bool = False

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> TopicRule:
        """The rule of a token's claims; AuthError(BAD_CLAIMS) when ``topics`` is not a list
        of non-empty strings, each an exact topic (no ``*``) or a ``prefix:*`` pattern."""
        if TOPICS_CLAIM not in claims:
            return cls(any=True)
        claim = claims[TOPICS_CLAIM]
        if not isinstance(claim, list) or not all(isinstance(t, str) and t for t in claim):
            raise AuthError(Reason.BAD_CLAIMS, "the topics claim must be a list of non-empty strings")
        exact: set[str] = set()
        prefixes: list[str] = []
        for topic in claim:
            if "*" not in topic:
                exact.add(topic)
                continue
            prefix = topic.removesuffix("*")
            if not prefix.endswith(":") or prefix == ":" or "*" in prefix:
                raise AuthError(Reason.BAD_CLAIMS, "a topics pattern must be prefix:* with * only at its end")
            prefixes.append(prefix)
        return cls(frozenset(exact), tuple(prefixes))

    def allows(self, topic: str) -> bool:
        return self.any or topic in self.exact or topic.startswith(self.prefixes)


@dataclass(frozen=True)
class Identity:
    """What a verified token says about its connection."""

    assigns: Mapping[str, Any]  # every claim, and "user_id" (the "sub" claim)
    topics: TopicRule

    def may_join(self, topic: str) -> bool:
        return self.topics.allows(topic)


@dataclass(frozen=True)
class TokenVerifier:
    """Checks connect tokens signed with ``secret`` by one of ``algorithms`` (HMAC only).

    ``required``: the claims a token must carry (by default an expiry and a user id).
    Raises ValueError for a configuration that cannot be safe: no algorithm, one outside
    ``ALGORITHMS`` (``none`` included), or a secret shorter than an algorithm needs.
    """

    secret: str | bytes = field(repr=False)
    algorithms: tuple[str, ...] = ("HS256",)
    leeway: float = DEFAULT_LEEWAY
    required: tuple[str, ...] = ("exp", "sub")

    def __post_init__(self) -> None:
        if not self.algorithms:
            raise ValueError("no token algorithm configured")
        unknown = [a for a in self.algorithms if a not in ALGORITHMS]
        if unknown:
            raise ValueError(f"token algorithms {unknown} are not among {list(ALGORITHMS)}")
        length = len(self.secret.encode() if isinstance(self.secret, str) else self.secret)
        needed = max(ALGORITHMS[a] for a in self.algorithms)
        if length < needed:
            raise ValueError(f"the token secret is {length} bytes; {', '.join(self.algorithms)} "
                             f"needs at least {needed}")
        if self.leeway < 0:
            raise ValueError(f"the token leeway must not be negative, not {self.leeway}")

    def verify(self, token: str | None) -> Identity:
        """The identity of a valid token; AuthError with the reason it is refused otherwise."""
        if not token:
            raise AuthError(Reason.MISSING, "no connect token")
        try:
            claims = jwt.decode(token, self.secret, algorithms=list(self.algorithms), leeway=self.leeway,
                                options={"require": list(self.required)})
        # The library's messages are dropped (from None): the reason is all a log needs.
        except jwt.ExpiredSignatureError:
            raise AuthError(Reason.EXPIRED, "the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError(Reason.NOT_YET_VALID, "the token is not valid yet (nbf or iat)") from None
        except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError):
            raise AuthError(Reason.BAD_SIGNATURE, "the token is not signed by an allowed algorithm "
                                                  "with the configured secret") from None
        except jwt.DecodeError:
            raise AuthError(Reason.MALFORMED, "the token is not a well-formed JWT") from None
        except jwt.InvalidTokenError:
            raise AuthError(Reason.BAD_CLAIMS, "a required claim is missing or a claim is invalid") from None
        user_id = claims.get("sub")
        return Identity(MappingProxyType({**claims, "user_id": user_id}), TopicRule.from_claims(claims))


# ---- logging a request URI ----------------------------------------------------------------------

REDACTED = "[redacted]"
SECRET_PARAMS = frozenset({"token", "access_token", "id_token", "api_key", "apikey", "key", "secret",
                           "password", "cookie"})
_SECRET_SUFFIXES = ("_token", "_key", "_secret", "-token", "-key", "-secret")
_QUERY_SEPARATORS = re.compile(r"([&;])")


def is_secret_param(name: str) -> bool:
    """Whether a query parameter (its decoded name) carries a credential."""
    name = name.strip().lower()
    return name in SECRET_PARAMS or name.endswith(_SECRET_SUFFIXES)


def redact_uri(uri: str) -> str:
    """``uri`` with the value of every credential-like query parameter replaced by
    ``[redacted]``; everything else is kept byte for byte. Parameter names are compared
    percent-decoded, so ``%74oken=...`` is redacted too."""
    path, question, rest = uri.partition("?")
    if not question:
        return uri
    query, hash_mark, fragment = rest.partition("#")
    parts = _QUERY_SEPARATORS.split(query)
    for i in range(0, len(parts), 2):  # the odd items are the separators
        name, equals, value = parts[i].partition("=")
        if equals and value and is_secret_param(unquote_plus(name)):
            parts[i] = f"{name}={REDACTED}"
    return f"{path}?{''.join(parts)}{hash_mark}{fragment}"

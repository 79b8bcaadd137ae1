"""server/auth: connect tokens (PyJWT), topic claims and URI redaction, with no sockets."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from server.auth import AuthError, Reason, TokenVerifier, TopicRule, redact_uri

SECRET = "s3cret-" + "x" * 57  # 64 bytes: enough for HS512
OTHER_SECRET = "other-" + "y" * 58


def token(claims: dict[str, Any] | None = None, secret: str = SECRET, algorithm: str = "HS256",
          **overrides: Any) -> str:
    """A token for user 42, valid for an hour unless ``overrides`` say otherwise (None: drop)."""
    now = int(time.time())
    payload = {"sub": "42", "iat": now, "exp": now + 3600, **(claims or {}), **overrides}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, algorithm=algorithm)


def refusal(verifier: TokenVerifier, bad: str | None) -> AuthError:
    with pytest.raises(AuthError) as caught:
        verifier.verify(bad)
    error = caught.value
    # Safe to log: no token, no secret, no library message chained to it.
    for text in (str(error), repr(error), *map(str, error.args)):
        assert SECRET not in text and OTHER_SECRET not in text
        assert not bad or bad not in text
        assert not bad or all(part not in text for part in bad.split(".") if len(part) > 8)
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    return error


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(SECRET)


# ---- tokens ---------------------------------------------------------------------------------------

def test_a_valid_token_gives_the_user_id_and_the_claims_as_assigns(verifier: TokenVerifier) -> None:
    identity = verifier.verify(token({"name": "ada"}))
    assert identity.assigns["user_id"] == "42"
    assert identity.assigns["name"] == "ada"
    assert identity.assigns["sub"] == "42"


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
def test_each_configured_hmac_algorithm_verifies(algorithm: str) -> None:
    assert TokenVerifier(SECRET, algorithms=(algorithm,)).verify(token(algorithm=algorithm)).assigns["user_id"] == "42"


def test_any_of_several_configured_algorithms_verifies() -> None:
    verifier = TokenVerifier(SECRET, algorithms=("HS256", "HS512"))
    assert verifier.verify(token(algorithm="HS512")).assigns["user_id"] == "42"
    assert verifier.verify(token(algorithm="HS256")).assigns["user_id"] == "42"


def test_an_expired_token_is_refused(verifier: TokenVerifier) -> None:
    now = int(time.time())
    assert refusal(verifier, token(exp=now - 60, iat=now - 120)).reason is Reason.EXPIRED


def test_expiry_within_the_leeway_is_accepted() -> None:
    now = int(time.time())
    assert TokenVerifier(SECRET, leeway=30).verify(token(exp=now - 10, iat=now - 100)).assigns["user_id"] == "42"
    assert refusal(TokenVerifier(SECRET, leeway=0), token(exp=now - 10, iat=now - 100)).reason is Reason.EXPIRED


def test_a_token_used_before_nbf_or_issued_in_the_future_is_not_yet_valid(verifier: TokenVerifier) -> None:
    now = int(time.time())
    assert refusal(verifier, token(nbf=now + 600)).reason is Reason.NOT_YET_VALID
    assert refusal(verifier, token(iat=now + 600)).reason is Reason.NOT_YET_VALID
    assert verifier.verify(token(nbf=now + 2)).assigns["user_id"] == "42"  # clock skew, within the leeway


def test_a_token_signed_with_another_secret_is_refused(verifier: TokenVerifier) -> None:
    assert refusal(verifier, token(secret=OTHER_SECRET)).reason is Reason.BAD_SIGNATURE


def test_an_alg_none_token_is_refused(verifier: TokenVerifier) -> None:
    unsigned = jwt.encode({"sub": "42", "exp": int(time.time()) + 3600}, "", algorithm="none")
    assert refusal(verifier, unsigned).reason is Reason.BAD_SIGNATURE
    # Nor does the none header with an HS256 signature over it pass.
    header, payload, _ = unsigned.split(".")
    signed = token().split(".")[2]
    assert refusal(verifier, f"{header}.{payload}.{signed}").reason is Reason.BAD_SIGNATURE


def test_the_algorithm_comes_from_the_configuration_not_the_token() -> None:
    only_hs512 = TokenVerifier(SECRET, algorithms=("HS512",))
    assert refusal(only_hs512, token(algorithm="HS256")).reason is Reason.BAD_SIGNATURE


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize("bad", [
    "not-a-token",
    "a.b",
    "a.b.c",
    "!!!.???.***",
    jwt.PyJWS().encode(b"[1, 2]", SECRET, algorithm="HS256"),  # signed, but its claims are no object
    jwt.PyJWS().encode(b"not json", SECRET, algorithm="HS256"),
    _b64(b"not json") + "." + _b64(b'{"sub":"42"}') + ".c2lnbmF0dXJl",
])
def test_a_malformed_token_is_refused(verifier: TokenVerifier, bad: str) -> None:
    assert refusal(verifier, bad).reason is Reason.MALFORMED


@pytest.mark.parametrize("missing", [None, ""])
def test_no_token_is_missing(verifier: TokenVerifier, missing: str | None) -> None:
    assert refusal(verifier, missing).reason is Reason.MISSING


@pytest.mark.parametrize("overrides", [{"exp": None}, {"sub": None}, {"sub": 42}, {"aud": "someone-else"}])
def test_missing_or_invalid_claims_are_refused(verifier: TokenVerifier, overrides: dict[str, Any]) -> None:
    assert refusal(verifier, token(**overrides)).reason is Reason.BAD_CLAIMS


def test_required_claims_are_configurable() -> None:
    assert TokenVerifier(SECRET, required=()).verify(token(exp=None, sub=None)).assigns["user_id"] is None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"algorithms": ()}, "no token algorithm"),
    ({"algorithms": ("none",)}, "'none'"),
    ({"algorithms": ("HS256", "RS256")}, "'RS256'"),
    ({"algorithms": ("HS512",), "secret": "z" * 63}, "63 bytes; HS512 needs at least 64"),
    ({"secret": b"short"}, "5 bytes; HS256 needs at least 32"),
    ({"leeway": -1}, "negative"),
])
def test_unsafe_configurations_are_rejected(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        TokenVerifier(**{"secret": SECRET, **kwargs})
    assert "short" not in str(caught.value) and "zzzz" not in str(caught.value)


def test_the_verifier_does_not_show_its_secret() -> None:
    assert SECRET not in repr(TokenVerifier(SECRET)) and SECRET not in str(TokenVerifier(SECRET))


# ---- topics ---------------------------------------------------------------------------------------

def test_no_topics_claim_allows_every_topic(verifier: TokenVerifier) -> None:
    identity = verifier.verify(token())
    assert identity.may_join("room:lobby") and identity.may_join("anything")


def test_topics_claim_allows_exact_topics_and_prefixes(verifier: TokenVerifier) -> None:
    identity = verifier.verify(token({"topics": ["room:lobby", "user:42:*"]}))
    assert identity.may_join("room:lobby")
    assert identity.may_join("user:42:inbox") and identity.may_join("user:42:")
    assert not identity.may_join("room:other")
    assert not identity.may_join("room:lobby:x")
    assert not identity.may_join("user:43:inbox")
    assert not identity.may_join("user:42")


def test_an_empty_topics_claim_allows_nothing(verifier: TokenVerifier) -> None:
    assert not verifier.verify(token({"topics": []})).may_join("room:lobby")


@pytest.mark.parametrize("claim", ["room:lobby", {"room:lobby": True}, [1], [""], [None], ["room*"], ["*"], [":*"],
                                   ["ro*m:*"], ["room:*:x"], None])
def test_a_bad_topics_claim_is_refused(verifier: TokenVerifier, claim: Any) -> None:
    bad = jwt.encode({"sub": "42", "exp": int(time.time()) + 60, "topics": claim}, SECRET, algorithm="HS256")
    error = refusal(verifier, bad)
    assert error.reason is Reason.BAD_CLAIMS
    assert json.dumps(claim) not in str(error)


def test_a_topic_rule_reads_claims_without_a_token() -> None:
    assert TopicRule.from_claims({}).allows("x")
    assert TopicRule.from_claims({"topics": ["a:*"]}) == TopicRule(prefixes=("a:",))


# ---- redaction ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("uri", "redacted"), [
    ("/socket/websocket?token=abc.def.ghi&vsn=2.0.0", "/socket/websocket?token=[redacted]&vsn=2.0.0"),
    ("/socket/websocket?vsn=2.0.0&token=abc", "/socket/websocket?vsn=2.0.0&token=[redacted]"),
    ("/api/broadcast?api_key=k1&x=1&Api-Key=k2&access_token=t",
     "/api/broadcast?api_key=[redacted]&x=1&Api-Key=[redacted]&access_token=[redacted]"),
    ("/s?%74oken=abc%2Edef&vsn=2.0.0", "/s?%74oken=[redacted]&vsn=2.0.0"),
    ("/s?TOKEN=a+b%20c", "/s?TOKEN=[redacted]"),
    ("/s?a=1;token=abc", "/s?a=1;token=[redacted]"),
    ("/s?token=abc=def#frag", "/s?token=[redacted]#frag"),
    ("ws://host:4000/s?token=abc", "ws://host:4000/s?token=[redacted]"),
    ("/s?token=&token&vsn=2.0.0&tokens=keep", "/s?token=&token&vsn=2.0.0&tokens=keep"),
    ("/s?vsn=2.0.0&topic=room%3Alobby", "/s?vsn=2.0.0&topic=room%3Alobby"),
    ("/socket/websocket", "/socket/websocket"),
    ("/s?", "/s?"),
])
def test_redact_uri(uri: str, redacted: str) -> None:
    assert redact_uri(uri) == redacted


def test_a_real_token_never_survives_redaction() -> None:
    value = token()
    assert value not in redact_uri(f"/socket/websocket?vsn=2.0.0&token={value}&x=y")

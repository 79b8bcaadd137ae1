"""vm.yml + environment overrides -> one validated, immutable Settings object.

This is the only module that reads the process environment. Two document shapes load here:

* the project's ``vm.yml``: ``release``, ``environments`` (build options and a cookie per
  environment, each optionally overriding run-time sections and ``app``), ``app`` (the module
  the node serves) and the run-time sections ``node``, ``endpoint``, ``kernel``, ``api`` and
  ``auth``;
* a release's embedded settings: the same run-time sections with one environment already
  merged in (``flatten`` makes it), so a release boots without the project's vm.yml.

Every error names the file, the key and, where known, the line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import re
import socket
from dataclasses import dataclass
from typing import Any, Mapping

import yaml

from .nodename import NodeName, NodeNameError, is_ip, is_long, kind

ENV_PORT = "PORT"
ENV_NODE = "RELEASE_NODE"
ENV_DISTRIBUTION = "RELEASE_DISTRIBUTION"
ENV_COOKIE = "RELEASE_COOKIE"
# A file whose content is the cookie: a Docker or Kubernetes secret is mounted as a file, so
# the cookie stays out of the environment (`docker inspect`, /proc/<pid>/environ).
ENV_COOKIE_FILE = "RELEASE_COOKIE_FILE"
ENV_SYNC_NODES = "RELEASE_SYNC_NODES"
ENV_DNS_CLUSTER_QUERY = "DNS_CLUSTER_QUERY"
ENV_TMP = "RELEASE_TMP"
ENV_API_KEY = "GOSSIPY_API_KEY"
ENV_JWT_SECRET = "GOSSIPY_JWT_SECRET"
ENV_APP = "GOSSIPY_APP"

# The app a node serves when vm.yml names none: the article's chat.
DEFAULT_APP = "server.chat"

ENV_WORKERS = "GOSSIPY_WORKERS"
# Set by the supervisor (server/supervisor.py) in the environment of the processes it starts:
# which worker this process is, and the cookie of a cluster of workers that has no node name.
ENV_WORKER = "GOSSIPY_WORKER"
ENV_WORKER_COOKIE = "GOSSIPY_WORKER_COOKIE"
# Where the workers of a node with no name find each other: only processes of this host can.
LOCAL_HOST = "127.0.0.1"

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")
# A DNS name as resolvers take it: labels of letters, digits, "-" and "_" (Docker and
# Kubernetes names use both), dot-separated, an optional final dot.
_DNS_NAME = re.compile(r"^(?:[A-Za-z0-9_-]{1,63}\.)*[A-Za-z0-9_-]{1,63}\.?$")
_MIN_PROD_COOKIE = 16
# A cookie made of nothing but these words, digits and separators ("changemechangeme",
# "my-cluster-secret-2024") is a placeholder or a guessable phrase, however long.
_DEFAULT_LOOKING = re.compile(r"^(?:cookie|secret|change|me|my|the|this|gossipy|default|password|passwd|example|"
                              r"test|cluster|erlang|node|replace\w*|[\d\W_])+$", re.IGNORECASE)
# Fewer distinct characters than this ("aaaa...", "abab..."): not a random secret either.
_MIN_DISTINCT = 8


class SettingsError(ValueError):
    """A settings document or override is invalid; the message says where and why."""


class Secret:
    """A secret setting. Its repr never shows the value, so it cannot leak into logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> bytes:
        return self._value.encode()

    def matches(self, presented: bytes) -> bool:
        """Constant-time: comparing digests (not the values) hides the length as well."""
        return hmac.compare_digest(hashlib.sha256(self.reveal()).digest(), hashlib.sha256(presented).digest())

    def __eq__(self, other: object) -> bool:
        # A cookie never equals an API key of the same text: they are different settings.
        return isinstance(other, Secret) and type(other) is type(self) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(******)"

    __str__ = __repr__


class Cookie(Secret):
    """The shared cluster secret."""

    __slots__ = ()


class ApiKey(Secret):
    """The backend API's bearer key (``api.key``)."""

    __slots__ = ()


class JwtSecret(Secret):
    """The secret that signs connect tokens (``auth.jwt_secret``)."""

    __slots__ = ()


@dataclass(frozen=True)
class Endpoint:
    host: str = "0.0.0.0"
    port: int = 4000
    # True: a browser's Origin must name the host the request was sent to (ports ignored, as
    # in Phoenix); a tuple: the allowed origins; False: any origin (the article's setting).
    check_origin: bool | tuple[str, ...] = True
    server_timeout: float = 60.0
    max_frame_size: int = 64 * 1024
    max_channels: int = 100
    outbound_buffer: int = 1024 * 1024
    shutdown_timeout: float = 5.0
    # After SIGTERM, seconds /readyz answers 503 while the node still serves as before, so a
    # balancer that probes it stops sending clients here before their websockets close (1001).
    # Waited only if /readyz was ever probed: with no balancer watching, it would only delay.
    drain_seconds: float = 2.0
    # permessage-deflate with clients that offer it (off, as in Phoenix): see README.
    compress: bool = False
    # With compress: context takeover, a compressor per group of sockets sent the same (see README).
    deflate_context_takeover: bool = False


@dataclass(frozen=True)
class Api:
    """The backend API, ``POST /api/broadcast`` (server/backend_api.py): off (404) without a key."""

    key: ApiKey | None = None
    # A request body larger than this is refused (413) before it is read; every other route
    # keeps the node's 4 KiB.
    max_body: int = 1024 * 1024
    max_batch: int = 1000


@dataclass(frozen=True)
class Auth:
    """Token auth by configuration: with a ``jwt_secret``, a websocket connects only with a
    ``token`` parameter that is a JWT signed with it by one of ``jwt_algorithms`` (checked,
    with the secret's length, by server/auth when the node starts)."""

    jwt_secret: JwtSecret | None = None
    jwt_algorithms: tuple[str, ...] = ("HS256",)


@dataclass(frozen=True)
class Tls:
    """TLS for the peer streams (``node.tls``): PEM files of this node's certificate and key,
    and of the CA that signed every node's certificate. Both ends of a stream present theirs
    (mutual authentication); the cookie handshake still runs inside."""

    certfile: str
    keyfile: str
    cafile: str


@dataclass(frozen=True)
class Distribution:
    """vm.args and the kernel's distribution settings; ``node`` None means not distributed."""

    node: str | None = None
    longnames: bool = False
    cookie: Cookie | None = None
    # The cluster's dist_port: worker K of a host listens on port + K - 1 (nodename).
    port: int = 4370
    bind: str | None = None
    sync_nodes_optional: tuple[str, ...] = ()
    sync_nodes_mandatory: tuple[str, ...] = ()
    sync_nodes_timeout_ms: int = 10_000
    # Ten seconds rather than Erlang's sixty. Only a peer that falls silent (frozen, cut off)
    # waits for this: a killed node resets its streams and is down at once. A hiccup shorter
    # than this heals inside TCP with nothing lost, a real partition is noticed (and redialed)
    # within seconds, and a false "down" costs gossipy only a reconnect.
    net_ticktime: float = 10.0
    tls: Tls | None = None
    # dns_cluster's convention: every A/AAAA record of these names is a node <our name>@<ip>,
    # resolved again every interval (milliseconds, as dns_cluster's :interval and Erlang's
    # sync_nodes_timeout).
    dns_cluster_query: tuple[str, ...] = ()
    dns_cluster_interval_ms: int = 5_000

    @property
    def host(self) -> str | None:
        return NodeName.parse(self.node).host if self.node else None

    @property
    def listen_address(self) -> str:
        """Where the distribution port binds: the name's own address for IP long names."""
        if self.bind:
            return self.bind
        host = self.host
        if self.longnames and host and is_ip(host):
            return host
        return "0.0.0.0"


@dataclass(frozen=True)
class Settings:
    release: str = "gossipy"
    environment: str | None = None
    # The module whose ROUTES (and SOCKET) the node serves; server/apps.py imports it.
    app: str = DEFAULT_APP
    endpoint: Endpoint = Endpoint()
    distribution: Distribution = Distribution()
    api: Api = Api()
    auth: Auth = Auth()
    tmp_dir: str | None = None
    # Node processes on this host (node.workers); over 1, foreground supervises them.
    workers: int = 1
    # Which of them this process is (1..workers), None in the supervisor or a lone node.
    worker: int | None = None

    def describe(self) -> dict[str, Any]:
        """The settings as plain data, secrets masked: for `bin/gossipy describe` and logs."""
        data = dataclasses.asdict(self)
        data["distribution"]["cookie"] = "******" if self.distribution.cookie else None
        data["api"]["key"] = "******" if self.api.key else None
        data["auth"]["jwt_secret"] = "******" if self.auth.jwt_secret else None
        return data


# ---- the schema: section -> key -> (type check, description) -------------------------------

def _bool(v: Any) -> bool:
    return isinstance(v, bool)


def _port(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 65535


def _positive_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


def _non_negative_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _string(v: Any) -> bool:
    return isinstance(v, str) and v != ""


def _node_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _names(v: Any) -> bool:
    """A non-empty list of non-empty strings."""
    return isinstance(v, list) and bool(v) and all(isinstance(x, str) and x for x in v)


def _dns_names(v: Any) -> bool:
    names = v if isinstance(v, list) else [v]
    return bool(names) and all(isinstance(x, str) and _DNS_NAME.match(x) for x in names)


_TLS_KEYS = tuple(field.name for field in dataclasses.fields(Tls))


def _tls(v: Any) -> bool:
    return isinstance(v, dict) and set(v) == set(_TLS_KEYS) and all(_string(x) for x in v.values())


def _module_name(v: Any) -> bool:
    return isinstance(v, str) and _MODULE.match(v) is not None


_APP_EXPECTED = "a Python module name such as myapp or examples.notifications.app"


def _workers(v: Any) -> bool:
    return v == "auto" or _positive_int(v)


def _origin_setting(v: Any) -> bool:
    return isinstance(v, bool) or (isinstance(v, list) and all(isinstance(x, str) for x in v))


RUNTIME_SCHEMA: dict[str, dict[str, tuple[Any, str]]] = {
    "node": {
        "sname": (_string, "a short node name such as gossipy (gossipy@<short hostname>)"),
        "name": (_string, "a long node name such as gossipy@127.0.0.1"),
        "cookie": (_string, "the shared cluster secret"),
        "dist_port": (_port, "a TCP port number (0-65535)"),
        "dist_bind": (_string, "an address to bind the distribution port"),
        "tls": (_tls, "a mapping of certfile, keyfile and cafile (paths of PEM files)"),
        "workers": (_workers, "a positive integer, or auto (one per core)"),
    },
    "endpoint": {
        "host": (_string, "an address to bind the HTTP port"),
        "port": (_port, "a TCP port number (0-65535)"),
        "check_origin": (_origin_setting, "true, false, or a list of allowed origins"),
        "server_timeout": (_positive_number, "seconds, a positive number"),
        "max_frame_size": (_positive_int, "bytes, a positive integer"),
        "max_channels": (_positive_int, "a positive integer"),
        "outbound_buffer": (_positive_int, "bytes, a positive integer"),
        "shutdown_timeout": (_positive_number, "seconds, a positive number"),
        "drain_seconds": (_non_negative_number, "seconds, a number >= 0"),
        "compress": (_bool, "true or false"),
        "deflate_context_takeover": (_bool, "true or false"),
    },
    "kernel": {
        "sync_nodes_optional": (_node_list, "a list of node names"),
        "sync_nodes_mandatory": (_node_list, "a list of node names"),
        "sync_nodes_timeout": (lambda v: _positive_int(v) or v == 0, "milliseconds, an integer >= 0"),
        "net_ticktime": (_positive_number, "seconds, a positive number"),
        "dns_cluster_query": (_dns_names, "a DNS name, or a list of them"),
        "dns_cluster_interval": (_positive_int, "milliseconds, a positive integer"),
    },
    "api": {
        "key": (_string, "the backend API's bearer key"),
        "max_body": (_positive_int, "bytes, a positive integer"),
        "max_batch": (_positive_int, "a positive integer"),
    },
    "auth": {
        "jwt_secret": (_string, "the secret that signs connect tokens (HMAC)"),
        "jwt_algorithms": (_names, "a non-empty list of HMAC algorithm names such as HS256"),
    },
    "release": {
        "name": (_string, "the release name"),
        "default_environment": (_string, "the name of an environment"),
        "environment": (_string, "the environment this release was built for"),
        "version": (_string, "the release version"),
        "tmp_dir": (_string, "a writable folder for pid, log and unpacked code"),
    },
}

BUILD_SCHEMA: dict[str, tuple[Any, str]] = {
    "include_python": (_bool, "true or false"),
    "cookie": (_string, "the shared cluster secret"),
}

_RUNTIME_SECTIONS = ("node", "endpoint", "kernel", "api", "auth")
_SECRET_KEYS = frozenset({"cookie", "key", "jwt_secret"})


# ---- reading YAML with line numbers ----------------------------------------------------------

class Document:
    """A parsed settings file: its data, and the line of every key path (for error messages)."""

    def __init__(self, path: str, data: dict[str, Any], lines: dict[tuple[str, ...], int]) -> None:
        self.path = path
        self.data = data
        self.lines = lines

    def where(self, keys: tuple[str, ...]) -> str:
        while keys and keys not in self.lines:
            keys = keys[:-1]
        line = self.lines.get(keys)
        return f"{self.path}, line {line}" if line else self.path

    def fail(self, keys: tuple[str, ...], message: str) -> SettingsError:
        return SettingsError(f"{self.where(keys)}: {'.'.join(keys) or '(top level)'}: {message}")


def read_document(path: str) -> Document:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read settings: {exc.strerror}") from None
    return parse_document(text, path)


def parse_document(text: str, path: str = "<string>") -> Document:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SettingsError(f"{path}{where}: not valid YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping of sections at the top level")
    lines: dict[tuple[str, ...], int] = {}
    _record_lines(node, (), lines)
    return Document(path, data, lines)


def _record_lines(node: Any, keys: tuple[str, ...], lines: dict[tuple[str, ...], int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = keys + (str(key_node.value),)
            lines[child] = key_node.start_mark.line + 1
            _record_lines(value_node, child, lines)


# ---- validation and merging ------------------------------------------------------------------

def _check_section(doc: Document, keys: tuple[str, ...], section: Any,
                   schema: Mapping[str, tuple[Any, str]]) -> None:
    if section is None:
        return
    if not isinstance(section, dict):
        raise doc.fail(keys, "expected a mapping")
    for key, value in section.items():
        if key not in schema:
            raise doc.fail(keys + (str(key),), f"unknown key; expected one of {', '.join(schema)}")
        check, expected = schema[key]
        if not check(value):
            # A cookie YAML read as a number is still the secret: name its type, never its value.
            got = f"{type(value).__name__} (not shown)" if key in _SECRET_KEYS else repr(value)
            raise doc.fail(keys + (key,), f"expected {expected}, got {got}")


def _check_runtime(doc: Document, prefix: tuple[str, ...], data: Mapping[str, Any]) -> None:
    if "app" in data and not _module_name(data["app"]):
        raise doc.fail(prefix + ("app",), f"expected {_APP_EXPECTED}, got {data['app']!r}")
    for section in _RUNTIME_SECTIONS:
        if section in data:
            _check_section(doc, prefix + (section,), data[section], RUNTIME_SCHEMA[section])
    node = data.get("node") or {}
    if "sname" in node and "name" in node:
        raise doc.fail(prefix + ("node",), "set either sname or name, not both (short and long names do not mix)")


def validate(doc: Document) -> None:
    """Checks a vm.yml or an embedded release document, raising SettingsError on the first fault."""
    allowed = set(_RUNTIME_SECTIONS) | {"app", "release", "environments"}
    for key in doc.data:
        if key not in allowed:
            raise doc.fail((str(key),), f"unknown section; expected one of {', '.join(sorted(allowed))}")
    _check_section(doc, ("release",), doc.data.get("release"), RUNTIME_SCHEMA["release"])
    _check_runtime(doc, (), doc.data)
    envs = doc.data.get("environments")
    if envs is None:
        return
    if not isinstance(envs, dict) or not envs:
        raise doc.fail(("environments",), "expected a mapping of environment names")
    # The run-time sections and app are checked by _check_runtime, with the environment's prefix.
    build_keys = {**BUILD_SCHEMA, **{s: (lambda v: True, "") for s in (*_RUNTIME_SECTIONS, "app")}}
    for name, env in envs.items():
        keys = ("environments", str(name))
        _check_section(doc, keys, env, build_keys)
        _check_runtime(doc, keys, env or {})
    default = (doc.data.get("release") or {}).get("default_environment")
    if default is not None and default not in envs:
        raise doc.fail(("release", "default_environment"), f"no environment named {default!r}")


def environment_names(doc: Document) -> list[str]:
    return list((doc.data.get("environments") or {}).keys())


def build_options(doc: Document, env: str) -> dict[str, Any]:
    """The build options of one environment (include_python, ...), for build.py."""
    validate(doc)
    envs = doc.data.get("environments") or {}
    if env not in envs:
        raise doc.fail(("environments",), f"no environment named {env!r}; have {', '.join(envs) or 'none'}")
    options = envs[env] or {}
    return {key: options.get(key) for key in BUILD_SCHEMA}


def flatten(doc: Document, env: str) -> dict[str, Any]:
    """One environment merged over the run-time sections: what a release embeds.

    ``${VAR}`` references stay as written; they are substituted when the release boots.
    """
    options = build_options(doc, env)
    envs = doc.data["environments"]
    merged: dict[str, Any] = {}
    app = (envs[env] or {}).get("app", doc.data.get("app"))
    if app is not None:
        merged["app"] = app
    for section in _RUNTIME_SECTIONS:
        values = dict(doc.data.get(section) or {})
        override = (envs[env] or {}).get(section) or {}
        if section == "node" and ({"sname", "name"} & override.keys()):
            values.pop("sname", None)
            values.pop("name", None)
        values.update(override)
        if section == "node" and options.get("cookie") is not None:
            values["cookie"] = options["cookie"]
        if values:
            merged[section] = values
    release = {k: v for k, v in (doc.data.get("release") or {}).items() if k != "default_environment"}
    merged["release"] = {**release, "environment": env}
    return merged


# ---- the environment ----------------------------------------------------------------------------

def _substitute(doc: Document, keys: tuple[str, ...], value: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                raise doc.fail(keys, f"refers to ${{{name}}}, but the environment variable {name} is not set")
            return environ[name]
        return _VAR.sub(replace, value)
    if isinstance(value, list):
        return [_substitute(doc, keys, v, environ) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(doc, keys + (str(k),), v, environ) for k, v in value.items()}
    return value


def short_hostname() -> str:
    return socket.gethostname().split(".", 1)[0]


def _node_name(name: str, longnames: bool, what: str) -> NodeName:
    """Checks NAME@HOST and that it is of this node's kind (sname: short; name: long)."""
    try:
        parsed = NodeName.parse(name)
    except NodeNameError as exc:
        raise SettingsError(f"{what}: {exc}") from None
    if parsed.long != longnames:
        raise SettingsError(f"{what}: {name!r} is a {kind(parsed.long)} name, but this node uses "
                            f"{kind(longnames)} names ({'name' if longnames else 'sname'}:); "
                            f"short and long names do not mix")
    return parsed


def _resolve_node(node: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[str | None, bool]:
    mode = "name" if "name" in node else "sname" if "sname" in node else None
    value = node.get(mode) if mode else None
    if ENV_DISTRIBUTION in environ:
        mode = environ[ENV_DISTRIBUTION].strip()
        if mode not in ("sname", "name", "none"):
            raise SettingsError(f"{ENV_DISTRIBUTION}={mode!r}: expected sname, name or none")
        if mode == "none":
            return None, False
    if ENV_NODE in environ:
        value = environ[ENV_NODE].strip()
        if mode is None:
            mode = "name" if is_long(value) else "sname"
    if mode is None or not value:
        return None, False
    longnames = mode == "name"
    if "@" not in value:
        if longnames:
            host = socket.getfqdn()
            if "." not in host:
                raise SettingsError(f"node name {value!r}: long names need a host; give name: {value}@<fqdn-or-ip>")
        else:
            host = short_hostname()
        value = f"{value}@{host}"
    _node_name(value, longnames, "node name")
    return value, longnames


def cpu_count() -> int:
    """The cores this process may run on: its CPU affinity (which a container's cpuset narrows)."""
    return len(os.sched_getaffinity(0))


def _resolve_workers(node: Mapping[str, Any], environ: Mapping[str, str]) -> int:
    value: Any = node.get("workers", 1)
    if ENV_WORKERS in environ:
        text = environ[ENV_WORKERS].strip()
        value = text if text == "auto" else _ascii_int(text)
        if not _workers(value):
            raise SettingsError(f"{ENV_WORKERS}={environ[ENV_WORKERS]!r}: expected a positive integer or auto")
    return cpu_count() if value == "auto" else int(value)


def _resolve_worker(environ: Mapping[str, str], workers: int) -> int | None:
    if ENV_WORKER not in environ:
        return None
    text = environ[ENV_WORKER]
    index = _ascii_int(text)
    if index is None or not 1 <= index <= workers:
        raise SettingsError(f"{ENV_WORKER}={text!r}: expected a worker number from 1 to {workers}")
    return index


def _ascii_int(text: str) -> int | None:
    """The number ``text`` spells in ASCII digits, else None: str.isdigit also takes ``²``,
    which int() refuses, and int() takes other scripts' digits, which no one means here."""
    return int(text) if text.isascii() and text.isdecimal() else None


def _dns_cluster_query(kernel: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[str, ...]:
    if ENV_DNS_CLUSTER_QUERY not in environ:
        query = kernel.get("dns_cluster_query", [])
        return tuple([query] if isinstance(query, str) else query)
    names = tuple(n.strip() for n in environ[ENV_DNS_CLUSTER_QUERY].split(",") if n.strip())
    for name in names:
        if not _DNS_NAME.match(name):
            raise SettingsError(f"{ENV_DNS_CLUSTER_QUERY}={environ[ENV_DNS_CLUSTER_QUERY]!r}: {name!r} is not a "
                                f"DNS name")
    return names


def _check_dns_cluster_node(name: str | None, longnames: bool) -> None:
    """DNS gives addresses, not names: each record is dialed as <our name part>@<ip>, which
    reaches a peer only if every node is named that way, this one included."""
    if name is not None and longnames and is_ip(NodeName.parse(name).host):
        return
    part = NodeName.parse(name).name if name else "gossipy"
    got = f"this node is {name!r}" if name else "this node is not distributed (no node name)"
    raise SettingsError(f"kernel.dns_cluster_query / {ENV_DNS_CLUSTER_QUERY}: every address found is dialed "
                        f"as {part}@<ip>, so this node needs a long name with its own IP address as host, e.g. "
                        f"{ENV_NODE}={part}@$POD_IP; {got}")


def _cookie_text(node: Mapping[str, Any], environ: Mapping[str, str]) -> str | None:
    """RELEASE_COOKIE, else the content of RELEASE_COOKIE_FILE, else vm.yml's node.cookie."""
    if ENV_COOKIE_FILE not in environ:
        return environ.get(ENV_COOKIE, node.get("cookie"))
    path = environ[ENV_COOKIE_FILE]
    if ENV_COOKIE in environ:
        raise SettingsError(f"both {ENV_COOKIE} and {ENV_COOKIE_FILE}={path} are set; set one")
    try:
        with open(path, encoding="utf-8") as file:
            # Files made by `echo` or an editor end with a newline that is not part of the secret.
            cookie = file.read().rstrip("\r\n")
    except OSError as exc:
        raise SettingsError(f"{ENV_COOKIE_FILE}={path}: cannot read the cookie: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{ENV_COOKIE_FILE}={path}: the cookie is not UTF-8 text") from None
    if not cookie:
        raise SettingsError(f"{ENV_COOKIE_FILE}={path}: the file is empty")
    return cookie


def _refuse_weak(what: str, secret: str, remedy: str) -> None:
    """A prod secret must look random; the refusal never shows it."""
    if (len(secret) < _MIN_PROD_COOKIE or len(set(secret)) < _MIN_DISTINCT
            or _DEFAULT_LOOKING.match(secret) is not None):
        raise SettingsError(f"the prod {what} is too weak (under {_MIN_PROD_COOKIE} characters, under "
                            f"{_MIN_DISTINCT} different ones, or default-looking words); {remedy}")


def settings_from(data: Mapping[str, Any], environ: Mapping[str, str], doc: Document | None = None) -> Settings:
    """Builds Settings from a flat (already environment-merged) document and the environment."""
    doc = doc or Document("<settings>", dict(data), {})
    data = _substitute(doc, (), dict(data), environ)
    _check_runtime(doc, (), data)
    endpoint_data = dict(data.get("endpoint") or {})
    node = dict(data.get("node") or {})
    kernel = dict(data.get("kernel") or {})
    release = dict(data.get("release") or {})
    api = dict(data.get("api") or {})
    auth = dict(data.get("auth") or {})

    if ENV_PORT in environ:
        try:
            endpoint_data["port"] = int(environ[ENV_PORT])
        except ValueError:
            raise SettingsError(f"{ENV_PORT}={environ[ENV_PORT]!r}: expected a TCP port number") from None
        if not _port(endpoint_data["port"]):
            raise SettingsError(f"{ENV_PORT}={environ[ENV_PORT]!r}: expected a TCP port number (0-65535)")
    if isinstance(endpoint_data.get("check_origin"), list):
        endpoint_data["check_origin"] = tuple(endpoint_data["check_origin"])
    endpoint = Endpoint(**endpoint_data)
    if endpoint.deflate_context_takeover and not endpoint.compress:
        raise SettingsError("endpoint.deflate_context_takeover: true is a way of compressing: "
                            "it needs endpoint.compress: true")

    name, longnames = _resolve_node(node, environ)
    cookie_text = _cookie_text(node, environ)
    sync_optional = tuple(kernel.get("sync_nodes_optional", ()))
    if ENV_SYNC_NODES in environ:
        sync_optional = tuple(n.strip() for n in environ[ENV_SYNC_NODES].split(",") if n.strip())
    sync_mandatory = tuple(kernel.get("sync_nodes_mandatory", ()))
    dns_cluster_query = _dns_cluster_query(kernel, environ)
    if dns_cluster_query:
        _check_dns_cluster_node(name, longnames)
    environment = release.get("environment")
    app = environ.get(ENV_APP, data.get("app", DEFAULT_APP)).strip()
    if not _module_name(app):
        raise SettingsError(f"{ENV_APP}={app!r}: expected {_APP_EXPECTED}")
    dist_port = node.get("dist_port", Distribution.port)
    tls = Tls(**node["tls"]) if "tls" in node else None

    workers = _resolve_workers(node, environ)
    worker = _resolve_worker(environ, workers)
    if workers > 1 and endpoint.port == 0:
        raise SettingsError(f"endpoint.port 0 (any free port) cannot be shared by {workers} workers: "
                            f"give a port number (or {ENV_PORT})")
    if workers > 1 and name is not None and NodeName.parse(name).worker > 1:
        raise SettingsError(f"node name {name!r}: with workers, the name must not end in -<number>, "
                            f"which names the host's other workers ({name}-2, ...)")
    if worker is not None:
        if name is None:
            # Workers share broadcasts through a cluster even when the node has no name: one
            # of their own, on loopback, under a cookie the supervisor made up for them.
            name, longnames = f"{release.get('name', Settings.release)}@{LOCAL_HOST}", True
            cookie_text = environ.get(ENV_WORKER_COOKIE)
            sync_optional, sync_mandatory, tls = (), (), None
            if not cookie_text:
                raise SettingsError(f"worker {worker} of a node with no name needs {ENV_WORKER_COOKIE} "
                                    f"(its supervisor sets it)")
        first = NodeName.parse(name)
        sync_optional += tuple(str(first.for_worker(k)) for k in range(1, workers + 1))
        name = str(first.for_worker(worker))

    if name is not None:
        for listed in (name,) + sync_optional + sync_mandatory:
            try:
                _node_name(listed, longnames, "sync_nodes").port(dist_port)
            except NodeNameError as exc:
                raise SettingsError(f"node.dist_port {dist_port}: {exc}") from None
        if not cookie_text:
            raise SettingsError(f"node {name} is distributed but has no cookie: set node.cookie "
                                f"in vm.yml, {ENV_COOKIE} or {ENV_COOKIE_FILE}")
        if environment == "prod":
            _refuse_weak("cookie", cookie_text, f"run `python build.py release.init --force` for a fresh one, "
                         f"or set {ENV_COOKIE} or {ENV_COOKIE_FILE}")
    distribution = Distribution(
        node=name,
        longnames=longnames,
        cookie=Cookie(cookie_text) if cookie_text else None,
        port=dist_port,
        bind=node.get("dist_bind"),
        sync_nodes_optional=sync_optional,
        sync_nodes_mandatory=sync_mandatory,
        sync_nodes_timeout_ms=kernel.get("sync_nodes_timeout", Distribution.sync_nodes_timeout_ms),
        net_ticktime=float(kernel.get("net_ticktime", Distribution.net_ticktime)),
        tls=tls,
        dns_cluster_query=dns_cluster_query,
        dns_cluster_interval_ms=kernel.get("dns_cluster_interval", Distribution.dns_cluster_interval_ms),
    )
    api_key = environ.get(ENV_API_KEY, api.pop("key", None))
    if api_key and environment == "prod":
        _refuse_weak("api.key", api_key, f"set a random one in vm.yml or {ENV_API_KEY}")
    jwt_secret = environ.get(ENV_JWT_SECRET, auth.get("jwt_secret"))
    if jwt_secret and environment == "prod":
        _refuse_weak("auth.jwt_secret", jwt_secret, f"set a random one in vm.yml or {ENV_JWT_SECRET}")
    return Settings(
        release=release.get("name", Settings.release),
        environment=environment,
        app=app,
        endpoint=endpoint,
        distribution=distribution,
        api=Api(key=ApiKey(api_key) if api_key else None, **api),
        auth=Auth(jwt_secret=JwtSecret(jwt_secret) if jwt_secret else None,
                  jwt_algorithms=tuple(auth.get("jwt_algorithms", Auth.jwt_algorithms))),
        tmp_dir=environ.get(ENV_TMP, release.get("tmp_dir")),
        workers=workers,
        worker=worker,
    )


def load(path: str | None = None, env: str | None = None,
         environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from a vm.yml (choosing ``env``, else its default environment), an embedded
    release document, or, with no path, the built-in defaults; environment variables win."""
    environ = os.environ if environ is None else environ
    if path is None:
        return settings_from({}, environ)
    doc = read_document(path)
    validate(doc)
    data = doc.data
    if "environments" in data:
        env = env or (data.get("release") or {}).get("default_environment")
        data = flatten(doc, env) if env else {k: v for k, v in data.items() if k != "environments"}
    elif env is not None and (data.get("release") or {}).get("environment") not in (None, env):
        raise doc.fail(("release", "environment"), f"this document was built for "
                       f"{data['release']['environment']!r}, not {env!r}")
    return settings_from(data, environ, doc)

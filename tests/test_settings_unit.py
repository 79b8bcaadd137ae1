"""Settings as pure functions, in process: every way vm.yml can be wrong (file, line, key, what
was expected), node names, cookie strength, environment overrides and the merging of an
environment. One process-level test per path shows the command line turning a SettingsError
into one line and exit status 2: tests/release/test_release_settings_errors.py (build.py),
tests/test_node.py (``python -m server``), tests/hardening/test_hardening_security.py (a prod
node's weak or missing cookie)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from server import settings
from server.settings import SettingsError

BASE = """\
release:
  name: gossipy
  default_environment: prod
environments:
  dev:
    include_python: false
    cookie: "devcookie-devcookie"
  prod:
    include_python: true
    cookie: "prodcookie-prodcookie-prodcookie"
node:
  dist_port: 4370
endpoint:
  port: 4000
kernel:
  sync_nodes_timeout: 10000
"""

# (id, text replaced in BASE, replacement marking the line at fault with # HERE, key path named,
# what the message says)
CASES = [
    ("unknown section", "kernel:\n", "nodes:  # HERE\n  dist_port: 1\nkernel:\n", "nodes", "unknown section"),
    ("release unknown key", "  name: gossipy\n", "  nmae: gossipy  # HERE\n", "release.nmae", "unknown key"),
    ("release name type", "  name: gossipy\n", "  name: 7  # HERE\n", "release.name", "expected the release name"),
    ("default environment", "  default_environment: prod\n", "  default_environment: staging  # HERE\n",
     "release.default_environment", "no environment named 'staging'"),
    ("section not a mapping", "endpoint:\n  port: 4000\n", "endpoint: 4000  # HERE\n", "endpoint",
     "expected a mapping"),
    ("endpoint unknown key", "  port: 4000\n", "  prot: 4000  # HERE\n", "endpoint.prot", "unknown key"),
    ("port range", "  port: 4000\n", "  port: 70000  # HERE\n", "endpoint.port", "expected a TCP port number"),
    ("check_origin type", "  port: 4000\n", "  port: 4000\n  check_origin: 5  # HERE\n",
     "endpoint.check_origin", "expected true, false, or a list of allowed origins"),
    ("server_timeout type", "  port: 4000\n", "  port: 4000\n  server_timeout: soon  # HERE\n",
     "endpoint.server_timeout", "expected seconds, a positive number, got 'soon'"),
    ("max_frame_size zero", "  port: 4000\n", "  port: 4000\n  max_frame_size: 0  # HERE\n",
     "endpoint.max_frame_size", "expected bytes, a positive integer"),
    ("deflate_context_takeover type", "  port: 4000\n", "  port: 4000\n  deflate_context_takeover: yes please  # HERE\n",
     "endpoint.deflate_context_takeover", "expected true or false"),
    ("dist_port type", "  dist_port: 4370\n", "  dist_port: 4370x  # HERE\n", "node.dist_port",
     "expected a TCP port number"),
    ("sname type", "  dist_port: 4370\n", "  dist_port: 4370\n  sname: 5  # HERE\n", "node.sname",
     "expected a short node name"),
    ("sname and name", "node:\n", "node:  # HERE\n  sname: gossipy\n  name: gossipy@10.0.0.1\n", "node",
     "set either sname or name, not both"),
    ("sync list type", "  sync_nodes_timeout: 10000\n",
     "  sync_nodes_timeout: 10000\n  sync_nodes_optional: gossipy@ws1  # HERE\n",
     "kernel.sync_nodes_optional", "expected a list of node names"),
    ("sync timeout negative", "  sync_nodes_timeout: 10000\n", "  sync_nodes_timeout: -5  # HERE\n",
     "kernel.sync_nodes_timeout", "expected milliseconds, an integer >= 0"),
    ("net_ticktime zero", "  sync_nodes_timeout: 10000\n", "  sync_nodes_timeout: 10000\n  net_ticktime: 0  # HERE\n",
     "kernel.net_ticktime", "expected seconds, a positive number"),
    ("kernel unknown key", "  sync_nodes_timeout: 10000\n", "  sync_nodes_timeout: 10000\n  sync_node_optional: []  # HERE\n",
     "kernel.sync_node_optional", "unknown key"),
    ("dns query type", "  sync_nodes_timeout: 10000\n", "  sync_nodes_timeout: 10000\n  dns_cluster_query: [ws, 7]  # HERE\n",
     "kernel.dns_cluster_query", "expected a DNS name, or a list of them, got ['ws', 7]"),
    ("dns query name", "  sync_nodes_timeout: 10000\n", "  sync_nodes_timeout: 10000\n  dns_cluster_query: ws 1  # HERE\n",
     "kernel.dns_cluster_query", "expected a DNS name, or a list of them, got 'ws 1'"),
    ("dns interval", "  sync_nodes_timeout: 10000\n", "  sync_nodes_timeout: 10000\n  dns_cluster_interval: 0.5  # HERE\n",
     "kernel.dns_cluster_interval", "expected milliseconds, a positive integer"),
    ("environments empty", BASE[BASE.index("environments:"):BASE.index("node:")], "environments: {}  # HERE\n",
     "environments", "expected a mapping of environment names"),
    ("environment unknown key", "    include_python: true\n", "    include_python: true\n    include_erts: true  # HERE\n",
     "environments.prod.include_erts", "unknown key"),
    ("include_python type", "    include_python: true\n", '    include_python: "yes"  # HERE\n',
     "environments.prod.include_python", "expected true or false"),
    ("cookie type", '    cookie: "prodcookie-prodcookie-prodcookie"\n', "    cookie: 12345  # HERE\n",
     "environments.prod.cookie", "expected the shared cluster secret, got int (not shown)"),
    ("environment override value", "    include_python: true\n",
     "    include_python: true\n    endpoint:\n      port: -1  # HERE\n", "environments.prod.endpoint.port",
     "expected a TCP port number"),
    ("environment override key", "    include_python: true\n",
     "    include_python: true\n    kernel:\n      sync_node_optional: []  # HERE\n",
     "environments.prod.kernel.sync_node_optional", "unknown key"),
    ("environment names twice", "    include_python: true\n",
     "    include_python: true\n    node:  # HERE\n      sname: a\n      name: a@10.0.0.1\n",
     "environments.prod.node", "set either sname or name, not both"),
]

WEAK_PROD_COOKIES = ["cookie", "changeme", "short", "0123456789abcde",  # default-looking, or under 16
                     "changemechangeme", "secret-secret-secret", "password1234567890", "gossipy-cookie-2024",
                     "my-cluster-secret", "aaaaaaaaaaaaaaaaaaaaaaaa", "abababababababababab"]
STRONG_COOKIE = "k7Qv2Lx9Rt4Wp8Zs3Hn6Jd1Fb5Gc0Ym"


def fault(text: str) -> tuple[int, str]:
    """The line marked # HERE, and the message validating ``text`` as vm.yml raises."""
    line = next(n for n, l in enumerate(text.splitlines(), 1) if l.endswith("# HERE"))
    with pytest.raises(SettingsError) as failed:
        settings.validate(settings.parse_document(text, "vm.yml"))
    return line, str(failed.value)


def vm_yml(folder: Path, document: dict) -> str:
    path = folder / "vm.yml"
    path.write_text(yaml.safe_dump(document))
    return str(path)


def prod_vm_yml(folder: Path, cookie: str | None) -> str:
    prod = {} if cookie is None else {"cookie": cookie}
    return vm_yml(folder, {"environments": {"prod": prod}, "node": {"name": "gossipy@127.0.0.2"},
                           "endpoint": {"host": "127.0.0.2", "port": 0}})


# ---- vm.yml: file, line, key, what was expected ----------------------------------------------------

def test_the_base_document_is_valid() -> None:
    settings.validate(settings.parse_document(BASE, "vm.yml"))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_the_error_names_file_line_and_key(case: tuple[str, str, str, str, str]) -> None:
    _, old, new, key, expected = case
    assert old in BASE
    line, message = fault(BASE.replace(old, new, 1))
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"vm.yml, line {line}: {key}: "), message
    assert expected in message


def test_invalid_yaml_names_the_line() -> None:
    text = BASE.replace("  port: 4000\n", "  port: 4000: 4001\n")
    with pytest.raises(SettingsError) as failed:
        settings.parse_document(text, "vm.yml")
    assert str(failed.value).startswith(f"vm.yml, line {text.splitlines().index('  port: 4000: 4001') + 1}: "
                                        f"not valid YAML")


def test_a_cookie_of_the_wrong_type_is_refused_without_showing_it(tmp_path: Path) -> None:
    config = tmp_path / "vm.yml"
    config.write_text("node:\n  sname: gossipy\n  cookie: 918273645546372819\n", encoding="utf-8")
    with pytest.raises(SettingsError) as failed:
        settings.load(str(config), environ={})
    message = str(failed.value)
    assert message.startswith(f"{config}, line 3: node.cookie: ") and "918273645546372819" not in message


# ---- node names --------------------------------------------------------------------------------

@pytest.mark.parametrize("environ, message", [
    ({"RELEASE_NODE": "gossipy@ws1@x"}, "node name: 'gossipy@ws1@x' is not a node name of the form NAME@HOST"),
    ({"RELEASE_DISTRIBUTION": "name", "RELEASE_NODE": "gossipy@ws1"},
     "node name: 'gossipy@ws1' is a short name, but this node uses long names (name:); short and long names "
     "do not mix"),
    ({"RELEASE_DISTRIBUTION": "sname", "RELEASE_NODE": "gossipy@10.0.0.1"},
     "node name: 'gossipy@10.0.0.1' is a long name, but this node uses short names (sname:); short and long "
     "names do not mix"),
    ({"RELEASE_NODE": "gossipy@10.0.0.1", "RELEASE_SYNC_NODES": "gossipy@10.0.0.2,gossipy@ws2"},
     "sync_nodes: 'gossipy@ws2' is a short name, but this node uses long names (name:); short and long names "
     "do not mix"),
    ({"RELEASE_NODE": "gossipy@10.0.0.1", "RELEASE_SYNC_NODES": "ws2"},
     "sync_nodes: 'ws2' is not a node name of the form NAME@HOST"),
    ({"RELEASE_DISTRIBUTION": "long"}, "RELEASE_DISTRIBUTION='long': expected sname, name or none"),
], ids=["grammar", "short in long", "long in short", "sync_nodes kind", "sync_nodes grammar", "mode"])
def test_node_name_errors_say_what_is_wrong(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as failed:
        settings.load(environ={"RELEASE_COOKIE": "a-cookie-for-this-test", **environ})
    assert str(failed.value) == message


def test_release_node_alone_picks_long_names_for_an_ipv6_host_and_short_for_a_plain_one() -> None:
    ipv6 = settings.load(environ={"RELEASE_NODE": "gossipy@::1", "RELEASE_COOKIE": "a-cookie-for-this-test"})
    assert ipv6.distribution.longnames is True and ipv6.distribution.host == "::1"
    assert ipv6.distribution.listen_address == "::1"
    plain = settings.load(environ={"RELEASE_NODE": "gossipy@ws1", "RELEASE_COOKIE": "a-cookie-for-this-test"})
    assert plain.distribution.longnames is False and plain.distribution.listen_address == "0.0.0.0"


def test_a_bare_sname_gets_this_hosts_short_name() -> None:
    distribution = settings.load(environ={"RELEASE_NODE": "gossipy", "RELEASE_COOKIE": "c"}).distribution
    assert distribution.node == f"gossipy@{settings.short_hostname()}" and not distribution.longnames


# ---- the cookie ----------------------------------------------------------------------------------

@pytest.mark.parametrize("cookie", WEAK_PROD_COOKIES)
def test_a_prod_node_refuses_a_weak_cookie_without_echoing_it(tmp_path: Path, cookie: str) -> None:
    with pytest.raises(SettingsError) as failed:
        settings.load(prod_vm_yml(tmp_path, cookie), "prod", environ={})
    message = str(failed.value)
    assert "prod cookie is too weak" in message
    assert len(cookie) < 8 or cookie not in message


@pytest.mark.parametrize("how", ["empty in vm.yml", "empty RELEASE_COOKIE", "no cookie at all"])
def test_a_prod_node_refuses_to_start_without_a_cookie(tmp_path: Path, how: str) -> None:
    cookie = {"empty in vm.yml": "", "empty RELEASE_COOKIE": STRONG_COOKIE, "no cookie at all": None}[how]
    environ = {"RELEASE_COOKIE": ""} if how == "empty RELEASE_COOKIE" else {}
    with pytest.raises(SettingsError, match="cookie"):
        settings.load(prod_vm_yml(tmp_path, cookie), "prod", environ=environ)


def test_a_strong_prod_cookie_is_accepted_and_a_weak_one_is_fine_outside_prod(tmp_path: Path) -> None:
    strong = settings.load(prod_vm_yml(tmp_path, STRONG_COOKIE), "prod", environ={})
    assert strong.distribution.cookie == settings.Cookie(STRONG_COOKIE)
    document = {"environments": {"dev": {"cookie": "cookie"}}, "node": {"name": "gossipy@127.0.0.2"}}
    assert settings.load(vm_yml(tmp_path, document), "dev", environ={}).distribution.cookie is not None


def test_the_cookie_is_masked_in_describe_and_repr() -> None:
    loaded = settings.load(environ={"RELEASE_NODE": "gossipy@ws1", "RELEASE_COOKIE": "sekrit-cookie-value"})
    assert loaded.describe()["distribution"]["cookie"] == "******"
    assert "sekrit" not in repr(loaded) + str(loaded.describe())


def test_the_cookie_can_come_from_a_file_without_its_trailing_newline(tmp_path: Path) -> None:
    cookie_file = tmp_path / "cookie"
    cookie_file.write_text(STRONG_COOKIE + "\n")
    loaded = settings.load(prod_vm_yml(tmp_path, None), "prod", environ={"RELEASE_COOKIE_FILE": str(cookie_file)})
    assert loaded.distribution.cookie == settings.Cookie(STRONG_COOKIE)


@pytest.mark.parametrize("how", ["missing", "empty", "a directory", "not UTF-8", "also RELEASE_COOKIE", "weak"])
def test_a_bad_cookie_file_is_named_in_the_error(tmp_path: Path, how: str) -> None:
    path = tmp_path / "secrets" / "cookie"
    path.parent.mkdir()
    content = {"empty": b"\n", "not UTF-8": b"\xff" * 40, "weak": b"changeme\n"}.get(how, STRONG_COOKIE.encode())
    if how == "a directory":
        path.mkdir()
    elif how != "missing":
        path.write_bytes(content)
    environ = {"RELEASE_COOKIE_FILE": str(path)}
    if how == "also RELEASE_COOKIE":
        environ["RELEASE_COOKIE"] = STRONG_COOKIE
    expected = {"missing": "No such file or directory", "empty": "the file is empty",
                "a directory": "Is a directory", "not UTF-8": "not UTF-8 text",
                "also RELEASE_COOKIE": "both RELEASE_COOKIE and RELEASE_COOKIE_FILE", "weak": "too weak"}[how]
    with pytest.raises(SettingsError, match=expected) as failed:
        settings.load(prod_vm_yml(tmp_path, None), "prod", environ=environ)
    message = str(failed.value)
    assert "changeme" not in message if how == "weak" else f"RELEASE_COOKIE_FILE={path}" in message


# ---- merging an environment, and the environment's overrides ----------------------------------------

def test_an_environment_is_merged_over_the_run_time_sections() -> None:
    doc = settings.parse_document(BASE.replace("node:\n", "node:\n  sname: gossipy\n").replace(
        '    cookie: "prodcookie-prodcookie-prodcookie"\n',
        '    cookie: "prodcookie-prodcookie-prodcookie"\n    node:\n      name: gossipy@10.0.0.1\n'
        '    endpoint:\n      port: 4100\n'), "vm.yml")
    assert settings.flatten(doc, "prod") == {
        "node": {"dist_port": 4370, "name": "gossipy@10.0.0.1", "cookie": "prodcookie-prodcookie-prodcookie"},
        "endpoint": {"port": 4100},
        "kernel": {"sync_nodes_timeout": 10000},
        "release": {"name": "gossipy", "environment": "prod"},
    }


def test_the_environment_wins_over_the_document() -> None:
    data = {"node": {"sname": "gossipy", "cookie": "from-the-file"}, "endpoint": {"port": 4000, "host": "${HOST}"},
            "kernel": {"sync_nodes_optional": ["gossipy@ws2"]}}
    loaded = settings.settings_from(data, {"PORT": "0", "HOST": "127.0.0.9", "RELEASE_COOKIE": "from-the-env",
                                           "RELEASE_SYNC_NODES": " gossipy@ws3, ,gossipy@ws4"})
    assert (loaded.endpoint.port, loaded.endpoint.host) == (0, "127.0.0.9")
    assert loaded.distribution.cookie == settings.Cookie("from-the-env")
    assert loaded.distribution.sync_nodes_optional == ("gossipy@ws3", "gossipy@ws4")
    with pytest.raises(SettingsError, match=r"refers to \$\{HOST\}, but the environment variable HOST is not set"):
        settings.settings_from(data, {})
    with pytest.raises(SettingsError, match=r"^PORT='x': expected a TCP port number$"):
        settings.settings_from({}, {"PORT": "x"})


# ---- DNS discovery (dns_cluster's convention) ------------------------------------------------------

def test_dns_cluster_query_is_a_name_or_a_list_and_the_environment_a_comma_separated_list() -> None:
    base = {"node": {"name": "gossipy@10.0.0.5", "cookie": "c"}}
    one = settings.settings_from({**base, "kernel": {"dns_cluster_query": "ws.internal"}}, {})
    assert one.distribution.dns_cluster_query == ("ws.internal",)
    assert one.distribution.dns_cluster_interval_ms == 5000
    listed = settings.settings_from({**base, "kernel": {"dns_cluster_query": ["a.svc", "tasks.ws"],
                                                        "dns_cluster_interval": 250}}, {})
    assert (listed.distribution.dns_cluster_query, listed.distribution.dns_cluster_interval_ms) == (
        ("a.svc", "tasks.ws"), 250)
    overridden = settings.settings_from({**base, "kernel": {"dns_cluster_query": "a.svc"}},
                                        {"DNS_CLUSTER_QUERY": " ws, ,tasks.ws "})
    assert overridden.distribution.dns_cluster_query == ("ws", "tasks.ws")
    assert settings.settings_from(base, {"DNS_CLUSTER_QUERY": ""}).distribution.dns_cluster_query == ()
    with pytest.raises(SettingsError) as failed:
        settings.settings_from(base, {"DNS_CLUSTER_QUERY": "ws,not a name"})
    assert str(failed.value) == "DNS_CLUSTER_QUERY='ws,not a name': 'not a name' is not a DNS name"


@pytest.mark.parametrize("environ, shown", [
    ({"RELEASE_NODE": "gossipy@ws1"}, "this node is 'gossipy@ws1'"),
    ({"RELEASE_NODE": "chat@ws1.example.com"}, "this node is 'chat@ws1.example.com'"),
    ({"RELEASE_DISTRIBUTION": "none"}, "this node is not distributed (no node name)"),
], ids=["short name", "long name with a host name", "not distributed"])
def test_dns_cluster_query_needs_a_long_name_with_an_ip_host(environ: dict[str, str], shown: str) -> None:
    with pytest.raises(SettingsError) as failed:
        settings.load(environ={"RELEASE_COOKIE": "c", "DNS_CLUSTER_QUERY": "ws", **environ})
    part = environ.get("RELEASE_NODE", "gossipy").partition("@")[0]
    assert str(failed.value) == (
        f"kernel.dns_cluster_query / DNS_CLUSTER_QUERY: every address found is dialed as {part}@<ip>, so this "
        f"node needs a long name with its own IP address as host, e.g. RELEASE_NODE={part}@$POD_IP; {shown}")
    for node in ("gossipy@10.0.0.5", "gossipy@fd00::5"):
        loaded = settings.load(environ={"RELEASE_COOKIE": "c", "DNS_CLUSTER_QUERY": "ws", "RELEASE_NODE": node})
        assert loaded.distribution.dns_cluster_query == ("ws",)


def test_workers_default_to_one_and_come_from_the_document_or_the_environment() -> None:
    assert settings.settings_from({}, {}).workers == 1
    assert settings.settings_from({"node": {"workers": 3}}, {}).workers == 3
    assert settings.settings_from({"node": {"workers": 3}}, {"GOSSIPY_WORKERS": "2"}).workers == 2
    assert settings.settings_from({"node": {"workers": "auto"}}, {}).workers == settings.cpu_count()
    assert settings.settings_from({}, {"GOSSIPY_WORKERS": "auto"}).workers == settings.cpu_count()
    for bad in ("0", "-1", "two", "", "\u00b2", "\u0662"):  # superscript two, Arabic-Indic two
        with pytest.raises(SettingsError, match="GOSSIPY_WORKERS=.*expected a positive integer or auto"):
            settings.settings_from({}, {"GOSSIPY_WORKERS": bad})


def test_a_worker_gets_its_name_port_and_siblings_from_the_hosts_settings() -> None:
    data = {"node": {"name": "gossipy@127.0.0.2", "cookie": "c", "dist_port": 5000, "workers": 3},
            "kernel": {"sync_nodes_optional": ["gossipy@127.0.0.3"]}}
    host = settings.settings_from(data, {})
    assert (host.distribution.node, host.worker) == ("gossipy@127.0.0.2", None)
    second = settings.settings_from(data, {"GOSSIPY_WORKER": "2"})
    assert (second.distribution.node, second.worker, second.distribution.port) == ("gossipy-2@127.0.0.2", 2, 5000)
    assert second.distribution.sync_nodes_optional == ("gossipy@127.0.0.3", "gossipy@127.0.0.2",
                                                       "gossipy-2@127.0.0.2", "gossipy-3@127.0.0.2")
    for bad in ("4", "\u00b2", "\u0662"):
        with pytest.raises(SettingsError, match=f"GOSSIPY_WORKER='{bad}': expected a worker number from 1 to 3"):
            settings.settings_from(data, {"GOSSIPY_WORKER": bad})


def test_workers_of_a_node_with_no_name_form_a_cluster_on_loopback_under_the_supervisors_cookie() -> None:
    data = {"node": {"workers": 2}, "kernel": {"sync_nodes_optional": ["gossipy@ws9"]}}
    assert settings.settings_from(data, {}).distribution.node is None
    worker = settings.settings_from(data, {"GOSSIPY_WORKER": "2", "GOSSIPY_WORKER_COOKIE": "made-up"})
    distribution = worker.distribution
    assert (distribution.node, distribution.longnames, distribution.listen_address) == (
        "gossipy-2@127.0.0.1", True, "127.0.0.1")
    assert distribution.sync_nodes_optional == ("gossipy@127.0.0.1", "gossipy-2@127.0.0.1")
    assert distribution.cookie == settings.Cookie("made-up")
    with pytest.raises(SettingsError, match="needs GOSSIPY_WORKER_COOKIE"):
        settings.settings_from(data, {"GOSSIPY_WORKER": "2"})


@pytest.mark.parametrize("data, message", [
    ({"node": {"workers": 2}, "endpoint": {"port": 0}}, "endpoint.port 0 .* cannot be shared by 2 workers"),
    ({"node": {"workers": 2, "name": "chat-2@127.0.0.2", "cookie": "c"}}, "must not end in -<number>"),
    ({"node": {"workers": 3, "name": "g@127.0.0.2", "cookie": "c", "dist_port": 65534}},
     "node.dist_port 65534: g-3@127.0.0.2: worker 3's port, 65534 \\+ 2, is over 65535"),
])
def test_workers_that_cannot_work_are_refused(data: dict[str, dict[str, object]], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        settings.settings_from(data, {"GOSSIPY_WORKER": "1"})


def test_deflate_context_takeover_is_a_way_of_compressing() -> None:
    on = {"compress": True, "deflate_context_takeover": True}
    assert settings.settings_from({"endpoint": on}, {}).endpoint.deflate_context_takeover
    assert not settings.settings_from({"endpoint": {"compress": True}}, {}).endpoint.deflate_context_takeover
    with pytest.raises(SettingsError, match="endpoint.deflate_context_takeover: true .* needs endpoint.compress: true"):
        settings.settings_from({"endpoint": {"deflate_context_takeover": True}}, {})

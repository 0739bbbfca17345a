"""deploy/docker-compose.yml checked by structure, in seconds: the four services and the two optional
ones (profiles), memory limits within 512 MB, published ports, CURVE keys as secrets, and bus/query
wiring whose FLOWLENS_* variables are valid config keys that connect every service to the store.
tests/compose/test_compose.py runs the file for real (make compose-test)."""
import re
from pathlib import Path

import pytest
import yaml

from flowmodel.config import SETTINGS, load_config

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "docker-compose.yml"
MIB = 1 << 20


def mem_bytes(text) -> int:
    m = re.fullmatch(r"(\d+)\s*([kmg])i?b?", str(text).strip().lower())
    assert m, f"memory limit {text!r} not understood"
    return int(m.group(1)) * {"k": 1 << 10, "m": MIB, "g": 1 << 30}[m.group(2)]


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def configs(compose):
    """Each service's effective config: its config file plus its FLOWLENS_* environment."""
    out = {}
    for name, svc in compose["services"].items():
        path = COMPOSE.parent / f"{name}.yaml" if name in OPTIONAL else REPO / "configs" / "flowlens.yaml"
        out[name] = load_config(path, env={k: str(v) for k, v in svc["environment"].items()})
    return out


CORE = ("store", "collector", "analyzer", "web")
OPTIONAL = {"notifier": "notify", "poller": "snmp"}  # service -> the profile that starts it


def test_four_services_and_two_optional_ones_from_one_image(compose):
    services = compose["services"]
    assert set(services) == set(CORE) | set(OPTIONAL)
    for name, svc in services.items():
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile"
        config = f"/etc/flowlens/{name}.yaml" if name in OPTIONAL else "/etc/flowlens/flowlens.yaml"
        assert svc["command"][0] == name and svc["command"][1:] == ["--config", config]
        if name in CORE and name != "store":
            assert svc["depends_on"]["store"]["condition"] == "service_healthy"
        assert svc.get("profiles") == ([OPTIONAL[name]] if name in OPTIONAL else None), name
    for name in OPTIONAL:  # the config file each mounts is in deploy/ and loads
        source = services[name]["volumes"][0].split(":")[0]
        assert load_config(COMPOSE.parent / source)


def test_memory_limits_add_up_to_the_budget(compose):
    total = 0
    for name, svc in compose["services"].items():
        deploy_limit = mem_bytes(svc["deploy"]["resources"]["limits"]["memory"])
        assert mem_bytes(svc["mem_limit"]) == deploy_limit, name
        total += deploy_limit if name in CORE else 0
    assert total <= 512 * MIB, f"the four services' limits add up to {total / MIB:.0f} MiB"


def test_published_ports(compose):
    published = {p for svc in compose["services"].values() for p in svc.get("ports", [])}
    assert published == {"2055:2055/udp", "4739:4739/udp", "6343:6343/udp", "8080:8080/tcp"}
    assert "2055:2055/udp" in compose["services"]["collector"]["ports"]
    assert "8080:8080/tcp" in compose["services"]["web"]["ports"]


def test_every_flowlens_variable_is_a_config_key(compose):
    for name, svc in compose["services"].items():
        for var in svc["environment"]:
            assert var.startswith("FLOWLENS_"), (name, var)
            section, key = var[len("FLOWLENS_"):].lower().split("__")
            assert f"{section}.{key}" in SETTINGS, (name, var)


def test_bus_and_query_wiring(configs):
    store, collector, analyzer, web = (configs[n] for n in ("store", "collector", "analyzer", "web"))
    # The store listens on the service network...
    for key in ("storage.bus_xsub_bind", "storage.bus_xpub_bind", "storage.query_bind", "storage.events_bind"):
        assert store[key].startswith("tcp://0.0.0.0:"), key
    xsub_port = store["storage.bus_xsub_bind"].rsplit(":", 1)[1]
    xpub_port = store["storage.bus_xpub_bind"].rsplit(":", 1)[1]
    query_port = store["storage.query_bind"].rsplit(":", 1)[1]
    # ...and subscribes to its own forwarder.
    assert store["bus.subscribe_endpoint"] == f"tcp://127.0.0.1:{xpub_port}"
    # The others connect to it by service name.
    assert collector["bus.publish_endpoint"] == f"tcp://store:{xsub_port}"
    assert analyzer["bus.publish_endpoint"] == f"tcp://store:{xsub_port}"
    assert analyzer["bus.subscribe_endpoint"] == f"tcp://store:{xpub_port}"
    assert analyzer["query.endpoint"] == f"tcp://store:{query_port}"
    assert analyzer["bus.events_endpoint"] == f"tcp://store:{store['storage.events_bind'].rsplit(':', 1)[1]}"
    assert web["query.endpoint"] == f"tcp://store:{query_port}"
    # Published container ports match what the services bind.
    assert collector["collector.bind_address"] == "0.0.0.0"
    assert (collector["collector.netflow_port"], collector["collector.ipfix_port"]) == (2055, 4739)
    assert web["web.listen"] == "0.0.0.0:8080"
    assert store["storage.sqlite_path"].startswith("/data/")


def test_healthchecks(compose):
    web = compose["services"]["web"]["healthcheck"]["test"]
    assert any("/healthz" in part for part in web)
    store = compose["services"]["store"]["healthcheck"]["test"]
    assert store[:4] == ["CMD", "flowlens", "query", "ping"]


def test_dockerfile_installs_every_package_and_runs_flowlens():
    text = (REPO / "deploy" / "Dockerfile").read_text()
    # python:3.11-slim is the default base; a build argument swaps it (the offline test build)
    assert text.startswith("#") and "ARG BASE=python:3.11-slim\nFROM ${BASE}" in text
    for pkg in ("libs/flowmodel", "services/store", "services/collector", "services/analyzer", "services/web"):
        assert f"./{pkg}" in text, pkg
    assert 'ENTRYPOINT ["flowlens"]' in text
    for path in ("libs/flowmodel", "services", "configs/flowlens.yaml"):
        assert (REPO / path).exists(), path


def test_store_ports_only_on_an_internal_network_behind_curve(compose, configs):
    """The store binds beyond loopback on the internal network, speaking CURVE with the keys
    mounted as secrets; every other service is a CURVE client with the mounted "local" pair."""
    services, networks = compose["services"], compose["networks"]
    assert services["store"]["networks"] == ["bus"] and networks["bus"]["internal"] is True
    assert "ports" not in services["store"]
    store = configs["store"]
    assert store["security.allow_insecure_bind"] is False
    assert store["security.server_key"] == "/run/secrets/store.key_secret"
    assert store["security.authorized_keys"] == "/run/secrets/authorized"
    for name, svc in services.items():
        cfg = configs[name]
        assert (cfg["security.client_key"], cfg["security.store_public_key"]) == \
            ("/run/secrets/local.key_secret", "/run/secrets/store.key"), name
        assert {"local.key_secret", "store.key"} <= set(svc["secrets"]), name
        assert "bus" in svc["networks"], name
        assert cfg["security.allow_insecure_bind"] is False, name
    assert set(services["store"]["secrets"]) == {"store.key_secret", "store.key", "local.key_secret", "authorized"}
    # every secret is a file deploy/keys.sh writes under deploy/secrets
    keys_sh = (COMPOSE.parent / "keys.sh").read_text()
    for name, secret in compose["secrets"].items():
        assert secret["file"] == f"./secrets/{name}", name
        assert name.split(".")[0] in keys_sh, name
    for name in ("collector", "web"):  # their published ports need a network that is not internal
        assert any(not networks[n].get("internal") for n in services[name]["networks"]), name

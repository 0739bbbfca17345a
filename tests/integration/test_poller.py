"""The SNMP poller as a process against a real agent: Debian's snmpd, started here on a loopback UDP
port with a small config of its own, serves this machine's IF-MIB. The poller walks it with SNMP v2c
and v3 (authPriv) and publishes each exporter's table through the store's bus; a subscriber gets
ifIndex, name and speed equal to what the agent serves (names checked against /sys/class/net, speeds
against snmpwalk), and the store's names op answers with the same. A wrong community and a wrong v3 key are counted as failures, raise the poller's
advisory in the store, and publish nothing."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import msgpack
import pytest
import zmq

from support.services import ServiceProcess, ServiceStack, free_ports, wait_until

IF_NAME = "1.3.6.1.2.1.31.1.1.1.1"
IF_HIGH_SPEED = "1.3.6.1.2.1.31.1.1.1.15"
IF_SPEED = "1.3.6.1.2.1.2.2.1.5"
COMMUNITY = "flowlens-test"
V3 = {"user": "flowlensv3", "auth_protocol": "sha", "auth_key": "auth-secret-1", "priv_protocol": "aes",
      "priv_key": "priv-secret-2"}


class Snmpd:
    """snmpd in the foreground as the current user, on 127.0.0.1:port, with its own config and
    persistent directory under tmp_path (it reads no system config: -C)."""

    def __init__(self, tmp_path: Path):
        self.binary = shutil.which("snmpd") or next((p for p in ("/usr/sbin/snmpd",) if os.path.exists(p)), None)
        self.port = free_ports(1, socket.SOCK_DGRAM)[0]
        self.dir = tmp_path / "snmpd"
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []

    def start(self, timeout_s: float = 15.0) -> "Snmpd":
        if self.binary is None:
            pytest.skip("snmpd is not installed (Debian package snmpd, in the Makefile's DEB_PACKAGES): "
                        "there is no SNMP agent to poll")
        self.dir.mkdir()
        conf = self.dir / "snmpd.conf"
        conf.write_text(f"agentAddress udp:127.0.0.1:{self.port}\n"
                        f"rocommunity {COMMUNITY} 127.0.0.1\n"
                        f"createUser {V3['user']} SHA \"{V3['auth_key']}\" AES \"{V3['priv_key']}\"\n"
                        f"rouser {V3['user']} priv\n")
        env = {**os.environ, "MIBS": "", "SNMP_PERSISTENT_DIR": str(self.dir / "persist")}
        self.proc = subprocess.Popen([self.binary, "-C", "-c", str(conf), "-f", "-Lo", "-p", str(self.dir / "pid")],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        os.set_blocking(self.proc.stdout.fileno(), False)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._read()
            if any("NET-SNMP version" in line for line in self.output):
                return self
            if self.proc.poll() is not None:
                self._read()
                pytest.skip("snmpd cannot run here (it exited at start): " + " | ".join(self.output[-5:]))
            time.sleep(0.05)
        self.stop()
        pytest.skip(f"snmpd did not say it runs within {timeout_s} s: " + " | ".join(self.output[-5:]))

    def _read(self) -> None:
        try:
            chunk = self.proc.stdout.read()
        except (OSError, TypeError):
            return
        if chunk:
            self.output += chunk.splitlines()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def walk(self, oid: str) -> dict[int, str]:
        """ifIndex -> value of one column, as snmpwalk (Debian package snmp) reads it from the agent."""
        snmpwalk = shutil.which("snmpwalk")
        if snmpwalk is None:
            pytest.skip("snmpwalk is not installed (Debian package snmp): nothing to check the speeds against")
        out = subprocess.run([snmpwalk, "-v2c", "-c", COMMUNITY, "-On", "-Oq", "-m", "", "-t", "2", "-r", "1",
                              f"127.0.0.1:{self.port}", oid], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        rows = {}
        for line in out.stdout.splitlines():  # ".1.3.6.1.2.1.31.1.1.1.1.4 eth0"
            name, _, value = line.partition(" ")
            rows[int(name.rsplit(".", 1)[1])] = value.strip().strip('"')
        return rows


def sys_interfaces() -> dict[int, str]:
    """ifIndex -> name of this machine's interfaces, as the kernel lists them (what snmpd serves)."""
    base = Path("/sys/class/net")
    return {int((d / "ifindex").read_text()): d.name for d in base.iterdir() if (d / "ifindex").exists()}


def agent_speeds(agent: Snmpd) -> dict[int, int]:
    """ifIndex -> speed in bit/s as the agent serves it: ifHighSpeed x 10^6, else ifSpeed."""
    names = agent.walk(IF_NAME)
    high, speed = agent.walk(IF_HIGH_SPEED), agent.walk(IF_SPEED)
    return {i: int(high[i]) * 1_000_000 if int(high.get(i, 0)) else int(speed.get(i, 0)) for i in names}


@pytest.fixture
def agent(tmp_path):
    a = Snmpd(tmp_path).start()
    yield a
    a.stop()


def subscribe(cfg: dict) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"interfaces")
    sock.connect(cfg["bus"]["subscribe_endpoint"])
    return sock


def receive_tables(sock: zmq.Socket, want: set[str], timeout_s: float) -> dict[str, dict]:
    """Interface events by exporter until every exporter in ``want`` has one or the deadline passes."""
    got: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s
    while not want <= set(got) and time.monotonic() < deadline:
        if sock.poll(int(max(0.0, deadline - time.monotonic()) * 1000) or 1):
            topic, body = sock.recv_multipart()
            event = msgpack.unpackb(body, raw=False)
            assert topic == b"interfaces"
            got.setdefault(event["exporter"], event)
    return got


def test_poller_publishes_what_snmpd_serves_over_v2c_and_v3_and_counts_bad_credentials(tmp_path, agent):
    expected_names = sys_interfaces()
    expected_speeds = agent_speeds(agent)
    assert {"lo"} <= set(expected_names.values()) and set(expected_speeds) == set(expected_names)
    targets = [{"exporter": "192.0.2.1", "host": "127.0.0.1", "port": agent.port, "community": COMMUNITY},
               {"exporter": "192.0.2.3", "host": "127.0.0.1", "port": agent.port, "version": 3, **V3},
               {"exporter": "192.0.2.66", "host": "127.0.0.1", "port": agent.port, "community": "not-" + COMMUNITY},
               {"exporter": "192.0.2.67", "host": "127.0.0.1", "port": agent.port, "version": 3,
                **V3, "auth_key": "wrong-secret-1"}]
    snmp = {"targets": targets, "timeout": "0.5s", "retries": 0, "failing_after": 1, "retry_interval": "2s"}
    with ServiceStack(tmp_path, ["store"], snmp=snmp) as stack:
        poller = ServiceProcess("poller", stack.config_path)
        sub = subscribe(stack.cfg)
        client = stack.client()
        try:
            poller.start()
            tables = receive_tables(sub, {"192.0.2.1", "192.0.2.3"}, 30)
            # the bad ones: failed at least twice (retried), their advisories raised in the store
            per_target = wait_until(lambda: (c := _poller_counters(client)) and
                                    all(t["failures"] >= 2 for t in c["per_target"] if t["exporter"] in ("192.0.2.66", "192.0.2.67"))
                                    and {t["exporter"]: t for t in c["per_target"]}, 30)
            advisories = wait_until(lambda: {a["key"]: a for a in client.advisories(analyzer="poller")
                                             if a["key"].startswith("poller:target:")}, 15)
            tables.update(receive_tables(sub, {"192.0.2.66", "192.0.2.67"}, 1.0))  # nothing more should come
            names = wait_until(lambda: (r := client.request("names")) and
                               {"192.0.2.1", "192.0.2.3"} <= {i["exporter"] for i in r["interfaces"]} and r, 15)
        finally:
            sub.close(0)
            rc = poller.stop()
        try:  # a poller that stops resolves its open advisories: nobody watches those agents any more
            after_stop = {a["key"]: a["state"] for a in client.advisories(analyzer="poller", include_resolved=True)}
        finally:
            client.close()
    assert rc == 0, poller.log()[-3000:]
    assert after_stop == {"poller:target:192.0.2.66": "resolved", "poller:target:192.0.2.67": "resolved"}, after_stop
    assert set(tables) == {"192.0.2.1", "192.0.2.3"}, (set(tables), poller.log()[-3000:])
    for exporter, event in tables.items():
        assert (event["origin"], event["complete"]) == ("snmp", True) and event["source"].startswith("poller@")
        assert {i["ifindex"]: i["name"] for i in event["interfaces"]} == expected_names, exporter
        assert {i["ifindex"]: i["speed_bps"] for i in event["interfaces"]} == expected_speeds, exporter
    # the store keeps them: its names op answers with the agent's table for both exporters, from snmp
    for exporter in ("192.0.2.1", "192.0.2.3"):
        rows = [i for i in names["interfaces"] if i["exporter"] == exporter]
        assert {i["ifindex"]: (i["name"], i["speed_bps"], i["source"]) for i in rows} == \
            {i: (expected_names[i], expected_speeds[i], "snmp") for i in expected_names}, exporter
    assert not [i for i in names["interfaces"] if i["exporter"] in ("192.0.2.66", "192.0.2.67")]
    assert per_target["192.0.2.1"]["failures"] == 0 and per_target["192.0.2.3"]["failures"] == 0
    assert per_target["192.0.2.1"]["interfaces"] == len(expected_names)
    assert "timeout" in per_target["192.0.2.66"]["last_error"]          # a wrong community goes unanswered
    assert "digest" in per_target["192.0.2.67"]["last_error"].lower()   # a wrong v3 key fails authentication
    assert set(advisories) == {"poller:target:192.0.2.66", "poller:target:192.0.2.67"}
    assert advisories["poller:target:192.0.2.66"]["severity"] == "WARNING"


def _poller_counters(client) -> dict:
    rows = [c for c in client.exporters()["collectors"] if c.get("kind") == "poller"]
    return rows[0]["counters"] if rows else {}



def test_a_table_walked_before_anyone_subscribed_reaches_a_later_subscriber(tmp_path, agent):
    """No store yet: the poller walks and holds the table. A subscriber bound where publishers
    connect (as the store's bus is) then gets it at once, from that one walk, not a second one."""
    snmp = {"targets": [{"exporter": "192.0.2.1", "host": "127.0.0.1", "port": agent.port, "community": COMMUNITY}]}
    stack = ServiceStack(tmp_path, [], snmp=snmp)
    poller = ServiceProcess("poller", stack.config_path)
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    try:
        poller.start()
        wait_until(lambda: any("msg=walked" in line for line in poller.lines), 30)
        sub.setsockopt(zmq.SUBSCRIBE, b"interfaces")
        sub.bind(stack.cfg["bus"]["publish_endpoint"])
        tables = receive_tables(sub, {"192.0.2.1"}, 15)
        wait_until(lambda: any("tables sent to a new subscriber" in line for line in poller.lines), 5)
    finally:
        sub.close(0)
        rc = poller.stop()
    assert rc == 0, poller.log()[-3000:]
    assert {i["ifindex"]: i["name"] for i in tables["192.0.2.1"]["interfaces"]} == sys_interfaces()
    assert sum("msg=walked" in line for line in poller.lines) == 1, poller.log()[-3000:]


def test_a_restarted_poller_takes_over_the_advisories_a_killed_one_left_open(tmp_path, agent):
    """A poller killed (SIGKILL) while two targets fail cannot resolve their advisories. The next run,
    with one of them now answering and the other gone from snmp.targets, takes both over: the gone one
    resolved at start, the other by its first good walk."""
    import copy

    from support.services import write_config

    failing = {"targets": [{"exporter": "192.0.2.66", "host": "127.0.0.1", "port": agent.port, "community": "not-" + COMMUNITY},
                           {"exporter": "192.0.2.67", "host": "127.0.0.1", "port": agent.port, "community": "not-" + COMMUNITY}],
               "timeout": "0.5s", "retries": 0, "failing_after": 1, "retry_interval": "1s"}
    with ServiceStack(tmp_path, ["store"], snmp=failing) as stack:
        client = stack.client()
        first = ServiceProcess("poller", stack.config_path)
        second = None
        try:
            first.start()
            raised = wait_until(lambda: {a["key"]: a["state"] for a in client.advisories(analyzer="poller")} if
                                len(client.advisories(analyzer="poller")) == 2 else None, 30)
            first.proc.kill()  # no stop(): nothing resolves them
            first.proc.wait(10)
            left_open = {a["key"]: a["state"] for a in client.advisories(analyzer="poller")}
            fixed = copy.deepcopy(stack.cfg)
            fixed["snmp"]["targets"] = [{**failing["targets"][0], "community": COMMUNITY}]
            second = ServiceProcess("poller", write_config(tmp_path / "fixed.yaml", fixed)).start()
            after = wait_until(lambda: (rows := {a["key"]: a for a in client.advisories(analyzer="poller", include_resolved=True)})
                               and all(a["state"] == "resolved" for a in rows.values()) and rows, 30)
            counters = _poller_counters(client)
        finally:
            rc = second.stop() if second else None
            first.stop()
            client.close()
    assert rc == 0, second.log()[-3000:] if second else ""
    assert set(raised) == set(left_open) == {"poller:target:192.0.2.66", "poller:target:192.0.2.67"}
    assert set(left_open.values()) == {"raised"}
    assert set(after) == set(raised)
    assert "work again" in after["poller:target:192.0.2.66"]["title"]              # its good walk resolved it
    assert "no longer in snmp.targets" in after["poller:target:192.0.2.67"]["description"]
    assert any("open advisories taken over from the store" in line for line in second.lines), second.log()[-3000:]

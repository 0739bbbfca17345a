"""The compose stack for real, where a Docker engine answers: build the image, bring the four
services up, send real NetFlow v5 export packets to the published 2055/udp, and find every flow
through the store's query port. Skipped, with the reason, where no engine answers."""
import json
import subprocess
from pathlib import Path

import pytest

from support.services import send_udp, wait_until

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"


def docker_engine_problem() -> str | None:
    try:
        import docker
    except ImportError:
        return "the docker Python package is not installed"
    try:
        docker.from_env(timeout=3).ping()
    except Exception as e:  # DockerException, connection errors: any means "no engine here"
        return f"no Docker engine answers here ({type(e).__name__}: {str(e)[:120]})"
    return None


pytestmark = pytest.mark.skipif(docker_engine_problem() is not None,
                                reason=str(docker_engine_problem()) + "; the compose file's structure is tested in test_compose_file.py")


def test_stack_receives_v5_and_answers_queries():
    from testcontainers.compose import DockerCompose
    from flowmodel.client import StoreClient
    from flowmodel.pcap import read_datagrams

    payloads = [d.payload for d in read_datagrams(str(DATA / "softflowd_v5_dns.pcap"))]
    expected = json.loads((DATA / "softflowd_v5_dns.totals.json").read_text())
    override = REPO / "tests" / "artifacts" / "compose-test.override.yml"
    override.parent.mkdir(parents=True, exist_ok=True)
    # Expose the query port to the host for this test only (it is not published by default).
    override.write_text("services:\n  store:\n    ports: ['127.0.0.1::5555/tcp']\n")
    with DockerCompose(str(REPO), compose_file_name=["deploy/docker-compose.yml", str(override)], build=True,
                       wait=True) as stack:
        host_port = int(stack.get_service_port("store", 5555))
        client = StoreClient(f"tcp://127.0.0.1:{host_port}", timeout_s=5, retries=2)
        wait_until(client.ping, timeout_s=60, interval_s=1)
        send_udp(2055, payloads)

        def stored():
            rows, cursor = [], None
            while True:
                page = client.flows(limit=1000, cursor=cursor, since=0, until=4_000_000_000_000)
                rows += page.rows()
                cursor = page.next_cursor
                if not cursor or not len(page):
                    return rows
        wait_until(lambda: len(stored()) >= expected["flow_records"], timeout_s=60, interval_s=1)
        rows = stored()
        assert len(rows) == expected["flow_records"]
        assert sum(r["bytes"] for r in rows) == expected["sum_octets"]
        health = subprocess.run(["docker", "compose", "-f", str(REPO / "deploy" / "docker-compose.yml"), "ps", "--format", "json"],
                                capture_output=True, text=True)
        assert "unhealthy" not in health.stdout
        client.close()

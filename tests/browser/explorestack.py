"""The Explore tests' stack: WebStack's store and web, its 300 synthetic flows, and an exporter EDGE
with interfaces, ASes and DSCP values, named in the config (exporters:) and by options data."""
from __future__ import annotations

import numpy as np

from browser.webstack import WebStack
from flowmodel import addr, bus
from flowmodel.schema import FlowBatch
from support.services import wait_until, write_config

EDGE = "192.0.2.20"
EDGE_FLOWS = 120


def edge_flows(now_ms: int, n: int = EDGE_FLOWS) -> FlowBatch:
    """n flows from exporter EDGE over the last 4 minutes, sampled 1 in 100: interfaces 1-4 in and 5-6
    out, ASes, DSCP EF/AF11/best effort; byte counts all different so every top list has one order."""
    i = np.arange(n)
    b = FlowBatch.empty(n)
    start = now_ms - 240_000 + i * 1500
    b["time_start"][:] = start
    b["time_end"][:] = start + 1000
    b.columns["src_addr"] = addr.from_texts([f"10.20.0.{1 + k % 7}" for k in range(n)])
    b.columns["dst_addr"] = addr.from_texts([f"10.30.0.{1 + k % 5}" for k in range(n)])
    b.columns["exporter"] = addr.from_texts([EDGE] * n)
    b["protocol"][:] = np.where(i % 3 == 0, 17, 6)
    b["src_port"][:] = 30000 + i % 11
    b["dst_port"][:] = np.array([443, 80, 53])[i % 3]
    b["input_if"][:] = 1 + i % 4
    b["output_if"][:] = 5 + i % 2
    b["src_as"][:] = np.array([64500, 64501, 0])[i % 3]
    b["dst_as"][:] = np.array([15169, 13335])[i % 2]
    b["tos"][:] = np.array([46 << 2, 10 << 2, 0])[i % 3]
    b["bytes"][:] = 50_000 + i * 37
    b["packets"][:] = 10 + i % 13
    b["sampling_rate"][:] = 100
    b["flow_version"][:] = 10
    return b


def explore_stack(tmp_path) -> WebStack:
    """A started WebStack whose store also holds EDGE's flows and names: Gi0/1 (10 Gbit/s) and Gi0/3
    (100 kbit/s) from the config, xe-0/0/2 from options data, ifIndex 4-6 unnamed."""
    ws = WebStack(tmp_path, flows=300)
    ws.stack.cfg["exporters"] = [{"address": EDGE, "name": "edge-2", "site": "lab",
                                  "interfaces": {1: {"name": "Gi0/1", "description": "uplink <isp>", "speed": "10G"},
                                                 3: {"name": "Gi0/3", "speed": "100k"}}}]
    write_config(ws.stack.config_path, ws.stack.cfg)
    ws.start()
    ws.publisher.flows(edge_flows(ws.now_ms), version=10)
    ws.publisher.event(bus.TOPIC_INTERFACES, {"exporter": EDGE, "origin": "options", "complete": False,
                                             "learnt_at": ws.now_ms, "interfaces": [
                                                 {"ifindex": 2, "name": "xe-0/0/2", "description": "", "speed_bps": 0}]})
    client = ws.client()
    try:
        wait_until(lambda: len(client.flows(limit=500, exporter=EDGE, since=ws.now_ms - 3_600_000)) >= EDGE_FLOWS,
                   timeout_s=15)
        # the web keeps the names a minute: the options name must be in before a page asks
        wait_until(lambda: any(i["ifindex"] == 2 and i["name"] == "xe-0/0/2"
                               for i in client.request("names")["interfaces"]), timeout_s=15)
    finally:
        client.close()
    return ws

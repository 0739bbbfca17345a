"""History: the questions of issue 12 asked of FlowLens's warm tier and of nfdump over the same
flows, side by side (``python -m bench history``; flows: FLOWLENS_BENCH_HISTORY_FLOWS, default 30M).

One run:

1. bench.flowgen makes the flows of the last 72 hours (a medium site), one 5-minute slice of flow
   time at a time (memory stays bounded), each slice cut into IPFIX datagrams (flowStart/End
   milliseconds carry the flows' historic times) and sent over UDP on 127.0.0.1 to a real FlowLens
   collector (store behind it, fresh SQLite file) and to a real nfcapd -y, which gets one process
   per slice so its file holds exactly that slice (bench.nfdumpfiles). Sending waits on both
   sockets' receive queues and on the store's committed count, so nothing is lost; the run checks
   that (store committed = collector decoded = nfdump's flows = N, nothing shed, no bus gap, no
   kernel drop) and fails otherwise.
2. It waits until the store has sealed every partition, then asks each question through the
   store's query socket (StoreClient) and nfdump over the window's files (-R first:last), best of
   three each, and compares the answers: top 10 keys and their bytes, series totals, flow counts.
   Windows end at the newest flow time (an hour boundary) and are whole 5-minute files.

nfdump's "bytes per 5 min" is ``-g`` (every file's flows/packets/bytes from its stat record: what
NfSen draws); for one host it prints every flow of the host (``-o fmt:%te,%byt 'host X'``) and the
benchmark sums them per 5 minutes, the time counted.
"""
from __future__ import annotations

import os
import platform
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from . import nfdumpfiles as nf
from .harness import REPO, ServiceProcess, stack_config, write_config

FLOWS = int(os.environ.get("FLOWLENS_BENCH_HISTORY_FLOWS", "30000000"))
HOURS = 72
HOUR_MS = 3_600_000
REPEAT = 3
QUERY_TIMEOUT_S = 150.0
STORE = {"sqlite_retention": "4d", "query_time_limit": "120s"}
ARTIFACT = REPO / "tests" / "artifacts" / "history.md"

from .historyload import Loaded, load, wait_sealed  # noqa: F401  (webhistory reaches them here)

# ---------------------------------------------------------------------------- questions

@dataclass
class Question:
    name: str
    window_ms: int
    flowlens: object            # (client, since, until, host) -> comparable answer
    nfdump: object              # (files arg, since, until, host) -> comparable answer
    compare: str                # "top", "series", "count"


def _fl_top(by):
    def ask(client, since, until, host):
        rows = client.top(by=by, metric="bytes", limit=10, since=since, until=until)["rows"]
        return [(str(r["key"]), int(r["bytes"])) for r in rows]
    return ask


def _nf_top(key):
    def ask(files, since, until, host):
        return [(k.strip(), b) for k, b in nf.top(files, key, 10)]
    return ask


def _fl_series(client, since, until, host):
    points = client.series(step=300, since=since, until=until, addr=host)["points"]
    return {int(p[0]): (int(p[3]), int(p[1])) for p in points if p[3]}


def _fl_flows(client, since, until, host):
    return len(client.flows(limit=50, addr=host, since=since, until=until))


QUESTIONS = [
    Question("top 10 sources by bytes, last 1 h", HOUR_MS, _fl_top("src"), _nf_top("srcip"), "top"),
    Question("top 10 sources, last 24 h", 24 * HOUR_MS, _fl_top("src"), _nf_top("srcip"), "top"),
    Question("top 10 sources, last 72 h", 72 * HOUR_MS, _fl_top("src"), _nf_top("srcip"), "top"),
    Question("top 10 destination ports, 24 h", 24 * HOUR_MS, _fl_top("dst_port"), _nf_top("dstport"), "top"),
    Question("bytes per 5 min, 72 h", 72 * HOUR_MS, lambda c, s, u, h: _fl_series(c, s, u, None),
             lambda f, s, u, h: {t: v for t, v in nf.per_file_series(f).items() if v[0]}, "series"),
    Question("bytes per 5 min for one host, 72 h", 72 * HOUR_MS, _fl_series,
             lambda f, s, u, h: nf.host_series(f, h), "series"),
    Question("50 flows of one host, 24 h", 24 * HOUR_MS, _fl_flows, lambda f, s, u, h: nf.host_flows(f, h, 50),
             "count"),
]


# explore (issue 15): the top 10 of a dimension with each key's series, as the Explore page asks
EXPLORE = [(by, hours * HOUR_MS) for by in ("src", "in_if") for hours in (1, 24, 72)]


@dataclass
class ExploreTiming:
    by: str
    window_ms: int
    p50_s: float
    p95_s: float
    runs: int
    source: str
    steps: int
    adds_up: bool       # totals == sum of the series + other, and == top's totals
    error: str = ""


def time_explore(client, end_ms: int, runs: int) -> list[ExploreTiming]:
    """p50/p95 (nearest rank) of ``runs`` explore requests per (dimension, window); the first of
    them meets a cold rollup cache."""
    from flowmodel.client import StoreError, StoreUnavailable

    out = []
    for by, window in EXPLORE:
        since, until = end_ms - window, end_ms
        took, reply = [], None
        try:
            for _ in range(runs):
                t = time.perf_counter()
                reply = client.explore(by, since=since, until=until, limit=10)
                took.append(time.perf_counter() - t)
            top = client.top(by=by, limit=10, scaled=True, since=since, until=until)
        except (StoreError, StoreUnavailable) as e:
            out.append(ExploreTiming(by, window, float("nan"), float("nan"), len(took), "", 0, False, str(e)))
            continue
        took.sort()
        adds = (sum(x["total"] for x in reply["series"]) + reply["other"]["total"] == reply["totals"]["bytes"]
                and reply["totals"] == top["totals"])
        out.append(ExploreTiming(by, window, took[(len(took) - 1) // 2], took[-(-95 * len(took) // 100) - 1],
                                 len(took), reply["source"], len(reply["times"]), adds))
    return out


@dataclass
class Answer:
    question: str
    flowlens_s: float | None
    nfdump_s: float
    agree: bool
    note: str
    flowlens_error: str = ""
    flowlens_answer: object = None
    nfdump_answer: object = None


def best_of(fn, repeat: int = REPEAT):
    """(best seconds, last answer); a StoreError/StoreUnavailable ends the tries and is returned."""
    best, answer = None, None
    for _ in range(repeat):
        t = time.perf_counter()
        answer = fn()
        took = time.perf_counter() - t
        best = took if best is None else min(best, took)
    return best, answer


def differences(kind: str, fl, nfd) -> str:
    """'' when the answers agree, else what differs (in words)."""
    if kind == "top":
        if fl == nfd:
            return ""
        return f"FlowLens {fl} vs nfdump {nfd}"
    if kind == "series":
        if fl == nfd:
            return ""
        keys = sorted(set(fl) | set(nfd))
        bad = [k for k in keys if fl.get(k) != nfd.get(k)]
        k = bad[0]
        return (f"{len(bad)} of {len(keys)} steps differ, first at {k}: FlowLens {fl.get(k)} vs nfdump {nfd.get(k)}"
                f"; totals FlowLens {_totals(fl)} nfdump {_totals(nfd)}")
    return "" if fl == nfd else f"FlowLens {fl} flows vs nfdump {nfd}"


def _totals(series: dict) -> tuple[int, int]:
    return sum(v[0] for v in series.values()), sum(v[1] for v in series.values())


class RssPeak:
    """Peak RSS of one process, sampled every 20 ms on a thread while the questions run, and what was
    being asked at the peak (``asking``, set by the caller)."""

    def __init__(self, pid: int):
        self.proc = psutil.Process(pid)
        self.peak = self.proc.memory_info().rss
        self.asking = "before the questions"
        self.peak_during = self.asking
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                rss = self.proc.memory_info().rss
            except psutil.Error:
                return
            if rss > self.peak:
                self.peak, self.peak_during = rss, self.asking

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


HOST_RANK = 100   # "one host": the 100th busiest source of the last hour by flows, a workstation


def pick_host(client, files_dir: Path, end_ms: int) -> str:
    """The host a user would look into: an ordinary one (the busiest sources are servers seen in a
    tenth of all flows, and nfdump would spend its time printing their flows), chosen with nfdump so
    that a FlowLens error cannot take the question away."""
    ranked = nf.top(nf.range_arg(files_dir, end_ms - HOUR_MS, end_ms), "srcip", HOST_RANK, order="flows")
    return ranked[-1][0].strip()


def ask_all(client, files_dir: Path, end_ms: int, host: str, repeat: int = REPEAT, log=print,
            rss: RssPeak | None = None) -> list[Answer]:
    from flowmodel.client import StoreError, StoreUnavailable

    answers = []
    for q in QUESTIONS:
        if rss is not None:
            rss.asking = q.name
        since, until = end_ms - q.window_ms, end_ms
        files = nf.range_arg(files_dir, since, until)
        nf_s, nf_answer = best_of(lambda: q.nfdump(files, since, until, host), repeat)
        try:
            fl_s, fl_answer = best_of(lambda: q.flowlens(client, since, until, host), repeat)
            error = ""
        except (StoreError, StoreUnavailable) as e:
            fl_s, fl_answer, error = None, None, str(e)
        note = f"FlowLens error: {error}" if error else differences(q.compare, fl_answer, nf_answer)
        a = Answer(q.name, fl_s, nf_s, not note, note, error, fl_answer, nf_answer)
        answers.append(a)
        log(f"    history: {q.name:40} FlowLens {_secs(a.flowlens_s):>9} nfdump {_secs(a.nfdump_s):>9}"
            f" {'agree' if a.agree else 'DIFFER: ' + note[:300]}")
    return answers


def _secs(s: float | None) -> str:
    return "error" if s is None else f"{s:.3f} s"


# ---------------------------------------------------------------------------- one run

@dataclass
class Result:
    loaded: Loaded
    answers: list[Answer]
    host: str
    sqlite_bytes: int
    nfcapd_bytes: int
    store_rss_peak: int
    store_rss_idle: int
    repeat: int
    explore: list = field(default_factory=list)
    store_rss_peak_during: str = ""     # the question being asked when the store's RSS peaked
    store_rss_peak_table: int = 0       # the peak over the table of questions alone (explore not yet asked)


def window_end(now_ms: int) -> int:
    """The newest flow time: the last hour boundary at least 3 minutes ago, so that the store's
    newest partition is past its 2-minute seal grace once the load is done."""
    return (now_ms - 180_000) // HOUR_MS * HOUR_MS


def start_store_and_collector(tmp: Path, **store) -> tuple[dict, dict]:
    cfg = stack_config(tmp, collector={"stats_interval": "1s", "template_path": ""}, storage={**STORE, **store})
    path = write_config(tmp / "flowlens.yaml", cfg)
    procs = {}
    try:
        for name in ("store", "collector"):
            procs[name] = ServiceProcess(name, path).start()
    except Exception:
        for p in reversed(list(procs.values())):
            p.stop()
        raise
    return cfg, procs


def sqlite_bytes(path: str) -> int:
    return sum(os.path.getsize(path + sfx) for sfx in ("", "-wal", "-shm") if os.path.exists(path + sfx))


def run_once(n: int, tmp: Path, hours: int = HOURS, repeat: int = REPEAT, log=print) -> Result:
    """Load n flows over the last ``hours`` into a fresh store and nfcapd files under ``tmp``, ask
    every question of both; raises when anything was lost."""
    from flowmodel.client import StoreClient

    end_ms = window_end(int(time.time() * 1000))
    start_ms = end_ms - hours * HOUR_MS
    files_dir = tmp / "nfcapd"
    files_dir.mkdir()
    cfg, procs = start_store_and_collector(tmp)
    client = StoreClient(cfg["query"]["endpoint"], timeout_s=QUERY_TIMEOUT_S, retries=0)
    try:
        wait_collector(client)
        loaded = load(n, start_ms, end_ms, cfg, client, files_dir, tmp / "nfcapd-slice", log)
        host = pick_host(client, files_dir, end_ms)
        store_pid = procs["store"].proc.pid
        rss_idle = psutil.Process(store_pid).memory_info().rss
        with RssPeak(store_pid) as peak:
            answers = ask_all(client, files_dir, end_ms, host, repeat, log, peak)
            table_peak = max(peak.peak, psutil.Process(store_pid).memory_info().rss)
            peak.asking = "explore"
            explore = time_explore(client, end_ms, 3 * repeat + 1)
        db = sqlite_bytes(cfg["storage"]["sqlite_path"])
    finally:
        client.close()
        for name in ("collector", "store"):
            if name in procs:
                procs[name].stop()
    return Result(loaded, answers, host, db, nf.files_bytes(files_dir), peak.peak, rss_idle, repeat, explore,
                  peak.peak_during, table_peak)


def wait_collector(client, timeout_s: float = 20.0) -> None:
    """Until the store has seen the collector's health event (the bus path is up end to end)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(s.get("service") == "collector" for s in client.status().get("services", [])):
            return
        time.sleep(0.1)
    raise RuntimeError("the store never saw the collector's health event")


def table(res: Result) -> str:
    n = res.loaded.flows
    lines = ["| question | FlowLens s | nfdump s | ratio (nfdump/FlowLens) | answers |",
             "| --- | ---: | ---: | ---: | --- |"]
    for a in res.answers:
        fl = "error" if a.flowlens_s is None else f"{a.flowlens_s:.3f}"
        ratio = "" if a.flowlens_s is None else f"{a.nfdump_s / a.flowlens_s:.2f}"
        agree = "same" if a.agree else a.note.replace("|", "/")[:400]
        lines.append(f"| {a.question} | {fl} | {a.nfdump_s:.3f} | {ratio} | {agree} |")
    lines.append(f"| disk per flow (SQLite file + WAL vs nfcapd -y files) | {res.sqlite_bytes / n:.0f} B |"
                 f" {res.nfcapd_bytes / n:.0f} B | {res.nfcapd_bytes / max(res.sqlite_bytes, 1):.2f} |"
                 f" {res.sqlite_bytes:,} vs {res.nfcapd_bytes:,} bytes |")
    if res.explore:
        lines += ["", "| explore (top 10 with series) | p50 s | p95 s | runs | source | steps | adds up |",
                  "| --- | ---: | ---: | ---: | --- | ---: | --- |"]
        for e in res.explore:
            lines.append(f"| by {e.by}, last {e.window_ms // HOUR_MS} h | {e.p50_s:.3f} | {e.p95_s:.3f} | {e.runs} |"
                         f" {e.source or 'error: ' + e.error[:200]} | {e.steps} | {'yes' if e.adds_up else 'NO'} |")
    return "\n".join(lines)


def summary(res: Result) -> str:
    ld = res.loaded
    return (f"{ld.flows:,} flows over {(ld.end_ms - ld.start_ms) // HOUR_MS} h (newest flow "
            f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(ld.end_ms / 1000))} UTC), one host = {res.host}. "
            f"Load through collector -> store and nfcapd: {ld.load_s:.0f} s ({ld.flows / ld.load_s:,.0f} flows/s, "
            f"lossless: {', '.join(f'{k} {v:,}' for k, v in ld.checks.items())}); "
            f"sealing after the load {ld.seal_s:.0f} s. Store RSS {res.store_rss_idle / 1e6:.0f} MB before the "
            f"questions, peak {res.store_rss_peak_table / 1e6:.0f} MB over the table's questions and "
            f"{res.store_rss_peak / 1e6:.0f} MB with explore ({res.store_rss_peak_during}). "
            f"Best of {res.repeat} per side.")


def run(report) -> None:
    n = FLOWS
    with tempfile.TemporaryDirectory(prefix="flowlens-bench-history-") as d:
        res = run_once(n, Path(d))
    for a in res.answers:
        report("history", f"{a.question}: FlowLens", a.flowlens_s if a.flowlens_s is not None else "error", "s",
               "agrees with nfdump" if a.agree else a.note[:200])
        report("history", f"{a.question}: nfdump", a.nfdump_s, "s",
               "" if a.flowlens_s is None else f"ratio nfdump/FlowLens {a.nfdump_s / a.flowlens_s:.2f}")
    for e in res.explore:
        name = f"explore by {e.by}, {e.window_ms // HOUR_MS} h"
        report("history", f"{name}: p50", e.p50_s, "s", f"{e.runs} runs, {e.source or e.error[:150]}")
        report("history", f"{name}: p95", e.p95_s, "s", "nearest rank" + ("" if e.adds_up else "; totals DO NOT add up"))
    report("history", "disk per flow: FlowLens SQLite + WAL", res.sqlite_bytes / n, "bytes", f"{n:,} flows, sealed")
    report("history", "disk per flow: nfcapd -y files", res.nfcapd_bytes / n, "bytes", "LZ4, 5-minute files")
    report("history", "store RSS peak, the table's questions", res.store_rss_peak_table / 1e6, "MB",
           "psutil, every 20 ms; the issue's target: under 150")
    report("history", "store RSS peak while answering", res.store_rss_peak / 1e6, "MB",
           f"psutil, every 20 ms; explore included; during {res.store_rss_peak_during}")
    report("history", "historic load through collector + store", n / res.loaded.load_s, "flows/s",
           f"{res.loaded.load_s:.0f} s, paced to lose nothing; sealing after it {res.loaded.seal_s:.0f} s")
    disagree = [a.question for a in res.answers if not a.agree and not a.flowlens_error]
    text = (f"# History: FlowLens warm tier vs nfdump\n\n{time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {platform.node()}, "
            f"{psutil.cpu_count()} CPUs, `python -m bench history` (FLOWLENS_BENCH_HISTORY_FLOWS={n}).\n\n"
            f"{summary(res)}\n\n{table(res)}\n")
    if disagree:
        text += "\n**ANSWERS DIFFER** for: " + "; ".join(disagree) + "\n"
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(text)
    print(text, flush=True)
    if disagree:
        print("history: ANSWERS DIFFER between FlowLens and nfdump: " + "; ".join(disagree), flush=True)

"""What each service loads while idle, in a real process: the budget (issue 12: the four services
under 120 MiB of RSS at idle) leaves no room for a library a service does not use. numpy alone is
~13 MiB of RSS per process; the web needs it only once it decodes a flows reply."""
from __future__ import annotations

import httpx

from support.services import PYTHON, REPO, ServiceProcess, stack_config, write_config

MODULES_AT_EXIT = str(REPO / "tests" / "support" / "modules_at_exit.py")


def _idle_modules(tmp_path, name: str, cfg: dict, touch=None) -> set[str]:
    """The modules a service process had loaded when it stopped, after ``touch(cfg)`` (if given)."""
    out = tmp_path / f"{name}-modules.txt"
    proc = ServiceProcess(name, write_config(tmp_path / f"{name}.yaml", cfg), prefix=[PYTHON, MODULES_AT_EXIT],
                          env={"MODULE_CENSUS_OUT": str(out)}).start()
    try:
        if touch:
            touch(cfg)
    finally:
        rc = proc.stop()
    assert rc == 0, proc.log()
    return set(out.read_text().split())


def test_web_serves_pages_without_numpy(tmp_path):
    cfg = stack_config(tmp_path, query={"timeout": "300ms", "retries": 0})

    def pages(cfg):
        for path in ("/", "/advisories", "/about", "/metrics", "/healthz"):
            httpx.get(f"http://{cfg['web']['listen']}{path}", timeout=10)

    modules = _idle_modules(tmp_path, "web", cfg, pages)
    assert "flowlens_web.app" in modules and "flowlens_web.csvexport" in modules  # the census saw the app
    assert "numpy" not in modules, sorted(m for m in modules if m.startswith("numpy"))[:5]


def test_analyzer_runs_without_the_command_line_modules(tmp_path):
    """`flowlens_analyzer analyze` needs flowmodel.cli (its exit codes) and the offline runner; the
    service does not."""
    # no store: its start-up reads (baseline, open advisories) give up after the read limit + 5 s
    cfg = stack_config(tmp_path, query={"timeout": "300ms", "retries": 0}, storage={"query_time_limit": "0.1s"})
    modules = _idle_modules(tmp_path, "analyzer", cfg)
    assert "flowlens_analyzer.engine" in modules  # the census saw the service
    assert not {"flowmodel.cli", "flowmodel.supervisor", "flowlens_analyzer.offline"} & modules


def test_collector_without_enrichment_reads_no_database_code(tmp_path):
    """The MaxMind reader and the range tables are for enrichment.geoip_asn / geoip_country only."""
    cfg = stack_config(tmp_path, collector={"template_path": ""})
    modules = _idle_modules(tmp_path, "collector", cfg)
    assert "flowlens_collector.enrich" in modules  # the census saw the service
    assert not {"maxminddb", "flowlens_collector.geotable", "flowlens_collector.mmdbtree"} & modules

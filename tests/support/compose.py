"""deploy/docker-compose.yml run for real with podman, offline (tests/compose): the tools it needs,
a Debian base image made with mmdebstrap (its tar cached outside the repository), the FlowLens image
built from wheels made on the host, the stack brought up by podman-compose with an override that
names that image and maps the published ports to free host ports, and each container's memory as
its cgroup counts it. ../shared/CONTAINERS.md has the recipe and what bites.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .services import free_ports, wait_until

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("FLOWLENS_CACHE", Path.home() / ".cache" / "flowlens"))
BASE_TAR = CACHE / "debian-py-bookworm.tar"
BASE_IMAGE = "localhost/debian-py:bookworm"
IMAGE = "localhost/flowlens:compose-test"
COMPOSE_VENV = CACHE / "podman-compose-venv"
CONTAINERS_CONF = CACHE / "containers.conf"
PACKAGES = ["flowmodel", "flowlens-store", "flowlens-collector", "flowlens-analyzer", "flowlens-web",
            "flowlens-notifier", "flowlens-poller"]
SOURCES = ["libs/flowmodel"] + [f"services/{s}" for s in ("store", "collector", "analyzer", "web", "notifier", "poller")]
CGROUP_MEMORY = Path("/sys/fs/cgroup/memory")
SERVICES = ("store", "collector", "analyzer", "web", "notifier", "poller")  # with the notify and snmp profiles
MIB = 1 << 20


def podman_compose() -> str | None:
    found = COMPOSE_VENV / "bin" / "podman-compose"
    return str(found) if found.exists() else shutil.which("podman-compose")


def tools_problem() -> str | None:
    """Why the compose stack cannot run here, in words, or None."""
    for tool in ("podman", "runc", "netavark", "aardvark-dns"):
        if not shutil.which(tool) and not Path("/usr/lib/podman", tool).exists():
            return f"{tool} is not installed (make compose-test installs it with podman's other tools)"
    if not BASE_TAR.exists() and not shutil.which("mmdebstrap"):
        return f"no cached base image at {BASE_TAR} and no mmdebstrap to make one"
    if not podman_compose():
        return f"podman-compose is neither in {COMPOSE_VENV} nor on PATH (make compose-test installs it)"
    if not (CGROUP_MEMORY / "memory.limit_in_bytes").exists() and not Path("/sys/fs/cgroup/memory.max").exists():
        return "no cgroup memory controller here, so the compose file's memory limits cannot be enforced"
    return None


def engine_env() -> dict:
    """runc (crun fails on this host's hybrid cgroups) and container ulimits within the host's hard ones."""
    import resource

    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nofile = 20000 if nofile == resource.RLIM_INFINITY else min(nofile, 65536)
    nproc = 8192 if nproc == resource.RLIM_INFINITY else min(nproc, 8192)
    CACHE.mkdir(parents=True, exist_ok=True)
    # netavark: with CNI podman turns DNS off on internal networks, and the services find the store by name
    text = (f'[containers]\ndefault_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
            '[engine]\nruntime = "runc"\n[network]\nnetwork_backend = "netavark"\n')
    if not CONTAINERS_CONF.exists() or CONTAINERS_CONF.read_text() != text:
        CONTAINERS_CONF.write_text(text)
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def run(cmd, env=None, timeout=600, check=True, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, env=env or engine_env(), capture_output=True, text=True, timeout=timeout, **kw)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def ensure_base_image() -> str:
    """Debian bookworm with python3 and venv, as a podman image; the mmdebstrap tar is cached."""
    if run(["podman", "image", "exists", BASE_IMAGE], check=False).returncode == 0:
        return "present"
    made = "cached tar"
    if not BASE_TAR.exists():
        partial = BASE_TAR.with_name(BASE_TAR.name + ".partial")  # renamed once whole
        run(["mmdebstrap", "--variant=minbase", "--format=tar", "--include=python3,python3-venv,ca-certificates",
             "bookworm", str(partial)], timeout=1200)
        partial.rename(BASE_TAR)
        made = "mmdebstrap"
    run(["podman", "import", str(BASE_TAR), BASE_IMAGE])
    return made


def build_context(dest: Path) -> Path:
    """One snapshot of the working tree (sources, config, Dockerfile) and wheels built from it."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for src in SOURCES:
        shutil.copytree(REPO / src, dest / src, ignore=ignore)
    (dest / "configs").mkdir()
    shutil.copy(REPO / "configs" / "flowlens.yaml", dest / "configs")
    (dest / "deploy").mkdir()
    shutil.copy(REPO / "deploy" / "Dockerfile", dest / "deploy")
    wheels = dest / "deploy" / "wheels"
    cached = CACHE / "wheels"
    cached.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--find-links", str(cached),
         "-w", str(wheels), *[f"./{s}" for s in SOURCES]], cwd=dest, env=dict(os.environ))
    for whl in wheels.glob("*.whl"):  # dependencies for the next run; FlowLens's own are rebuilt each time
        if not whl.name.startswith(("flowmodel-", "flowlens_")) and not (cached / whl.name).exists():
            shutil.copy(whl, cached)
    return dest


def build_image(context: Path) -> None:
    """The FlowLens image from the context's wheels; the previous build (423 MB) is removed."""
    old = run(["podman", "image", "inspect", "--format", "{{.Id}}", IMAGE], check=False).stdout.strip()
    run(["podman", "build", "--runtime", "runc", "--network", "none", "-f", "deploy/Dockerfile", "-t", IMAGE,
         "--build-arg", f"BASE={BASE_IMAGE}", "--build-arg", "PIP_OPTIONS=--no-index",
         "--build-arg", "PACKAGES=" + " ".join(PACKAGES), "."], cwd=context, timeout=900)
    new = run(["podman", "image", "inspect", "--format", "{{.Id}}", IMAGE]).stdout.strip()
    if old and old != new:
        run(["podman", "rmi", old], check=False)


def make_keys(secrets: Path) -> None:
    """The compose file's CURVE keys, by the script its users run (deploy/keys.sh)."""
    env = {**engine_env(), "ENGINE": "podman", "SECRETS_DIR": str(secrets)}
    run([str(REPO / "deploy" / "keys.sh"), IMAGE], env=env)


def compose_limits() -> dict[str, int]:
    doc = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text())
    out = {}
    for name, svc in doc["services"].items():
        m = re.fullmatch(r"(\d+)([mg])", svc["mem_limit"])
        out[name] = int(m.group(1)) * (MIB if m.group(2) == "m" else 1 << 30)
    return out


def write_override(path: Path, secrets: Path, udp_port: int, web_port: int) -> None:
    """The local image, the published ports on free loopback ports, the keys made for this run, and
    a retention that keeps old captures' flows (the test's was recorded in November 2026)."""
    services = {name: {"image": IMAGE} for name in SERVICES}
    services["store"]["environment"] = {"FLOWLENS_STORAGE__SQLITE_RETENTION": "3650d"}
    doc = {"services": services,
           "secrets": {name: {"file": str(secrets / name)}
                       for name in ("store.key_secret", "store.key", "local.key_secret", "authorized")}}
    text = yaml.safe_dump(doc, sort_keys=False)
    # `!override` replaces the compose file's port lists instead of appending to them
    text = text.replace("  collector:\n", f"  collector:\n    ports: !override\n    - 127.0.0.1:{udp_port}:2055/udp\n", 1)
    text = text.replace("  web:\n", f"  web:\n    ports: !override\n    - 127.0.0.1:{web_port}:8080/tcp\n", 1)
    path.write_text(text)


@dataclass
class Stack:
    """One compose project, brought up with deploy/docker-compose.yml and an override file."""
    project: str
    override: Path
    profiles: list[str] = field(default_factory=list)
    volumes: set[str] = field(default_factory=set)
    udp_port: int = 0   # the collector's published 2055/udp on the host
    web: str = ""       # the web's published base URL
    timer: "Timer | None" = None

    def compose(self, *args, check=True, timeout=300) -> subprocess.CompletedProcess:
        cmd = [podman_compose(), "-p", self.project, "-f", str(REPO / "deploy" / "docker-compose.yml"),
               "-f", str(self.override)]
        for p in self.profiles:
            cmd += ["--profile", p]
        return run([*cmd, *args], check=check, timeout=timeout)

    def containers(self) -> dict[str, dict]:
        """service -> podman inspect of its container."""
        ids = run(["podman", "ps", "-a", "-q", "--filter", f"label=io.podman.compose.project={self.project}"]).stdout.split()
        if not ids:
            return {}
        found = json.loads(run(["podman", "inspect", *ids]).stdout)
        return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in found}

    def up(self) -> None:
        self.compose("up", "-d")
        for c in self.containers().values():  # anonymous volumes (VOLUME /data) that `down -v` leaves
            self.volumes.update(m["Name"] for m in c["Mounts"] if m.get("Type") == "volume")

    def logs(self, service: str, tail: int = 40) -> str:
        out = run(["podman", "logs", "--tail", str(tail), f"{self.project}_{service}_1"], check=False)
        return out.stdout + out.stderr

    def down(self) -> None:
        # one `podman stop` for all: podman-compose stops them one after the other
        ids = [c["Id"] for c in self.containers().values()]
        if ids:
            run(["podman", "stop", "-t", "20", *ids], check=False, timeout=120)
        self.compose("down", "-v", "-t", "20", check=False)
        if self.volumes:
            run(["podman", "volume", "rm", "-f", *sorted(self.volumes)], check=False)


def cgroup_dir(container: dict) -> Path:
    """The container's memory cgroup: v1 under libpod_parent (podman's cgroupfs manager), or v2."""
    cid = container["Id"]
    for base in (CGROUP_MEMORY / "libpod_parent" / f"libpod-{cid}", CGROUP_MEMORY / "machine.slice" / f"libpod-{cid}.scope",
                 Path("/sys/fs/cgroup/libpod_parent") / f"libpod-{cid}", Path("/sys/fs/cgroup/machine.slice") / f"libpod-{cid}.scope"):
        if base.is_dir():
            return base
    raise AssertionError(f"no memory cgroup found for container {container['Name']} ({cid[:12]})")


def memory(container: dict) -> dict:
    """limit, peak and current usage in bytes, and OOM kills, from the container's cgroup."""
    d = cgroup_dir(container)

    def read(name: str) -> str:
        return (d / name).read_text().strip()

    if (d / "memory.limit_in_bytes").exists():  # cgroup v1
        oom = dict(line.split() for line in read("memory.oom_control").splitlines())
        return {"limit": int(read("memory.limit_in_bytes")), "peak": int(read("memory.max_usage_in_bytes")),
                "current": int(read("memory.usage_in_bytes")), "oom_kills": int(oom.get("oom_kill", 0))}
    events = dict(line.split() for line in read("memory.events").splitlines())
    limit = read("memory.max")
    return {"limit": int(limit) if limit != "max" else -1,
            "peak": int(read("memory.peak")) if (d / "memory.peak").exists() else -1,
            "current": int(read("memory.current")), "oom_kills": int(events.get("oom_kill", 0))}


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def prepare(work: Path, timer: "Timer") -> None:
    """Base image, wheels, the FlowLens image and CURVE keys (work/secrets), each step timed."""
    base = ensure_base_image()
    timer.lap(f"base image ({base})")
    context = build_context(work / "context")
    timer.lap("wheels")
    build_image(context)
    timer.lap("image")
    make_keys(work / "secrets")


def start(work: Path, timer: "Timer", project: str, profiles: list[str]) -> "Stack":
    """The stack up on free loopback ports, the web answering /healthz and the collector ready;
    the returned Stack carries udp_port (the collector's 2055) and web (its base URL)."""
    (udp_port,), (web_port,) = free_ports(1, socket.SOCK_DGRAM), free_ports(1)
    write_override(work / "override.yml", work / "secrets", udp_port, web_port)
    st = Stack(project=project, override=work / "override.yml", profiles=profiles)
    st.udp_port, st.web, st.timer = udp_port, f"http://127.0.0.1:{web_port}", timer
    try:
        st.up()
        wait_until(lambda: http_status(st.web + "/healthz") == 200, timeout_s=120, interval_s=0.5)
        wait_until(lambda: "msg=ready" in st.logs("collector"), timeout_s=60, interval_s=0.5)
    except BaseException:
        st.down()
        raise
    timer.lap("stack up")
    return st


class Timer:
    """Seconds per named step, for the test's report."""

    def __init__(self):
        self.steps: dict[str, float] = {}
        self._t = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.steps[name] = round(now - self._t, 1)
        self._t = now

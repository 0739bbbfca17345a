"""The ``flowlens`` command: run the services (``up``, or one of them), query the store, replay a
capture, run an offline analysis, check a config, manage the web's accounts and the CURVE keys. Each subcommand hands off to the module that
does the work; service packages are started as processes, never imported from here.
"""
from __future__ import annotations

import argparse
import os
import sys

from .config import ConfigError, config_from_env_or_path, load_config
from .output import FLOW_TABLE_COLUMNS, FORMATS, _human, render, reply_columns, reply_rows
from .protocol import OPS, QueryError, normalise_flow_filters
from .supervisor import MAX_BACKOFF_S, STABLE_AFTER_S

SERVICES = ("collector", "store", "analyzer", "web", "notifier", "poller")
FILTERS = ("src", "dst", "addr", "port", "src_port", "dst_port", "protocol", "exporter", "input_if", "output_if",
           "src_as", "dst_as", "as", "dscp", "src_country", "dst_country", "country", "by", "metric", "step", "order",
           "severity", "state", "analyzer", "subject", "kind", "key", "ifindex")
FILTER_HELP = {"src": "source address or CIDR", "dst": "destination address or CIDR", "addr": "either address",
               "port": "either port", "protocol": "tcp, udp, icmp, ... or a number", "exporter": "exporter address or CIDR",
               "input_if": "input ifIndex (with --exporter)", "output_if": "output ifIndex (with --exporter)",
               "src_as": "source AS number", "dst_as": "destination AS number", "as": "either AS number",
               "dscp": "DSCP 0-63 (tos >> 2)", "ifindex": "ifcounters: the interface's ifIndex (with --exporter)",
               "src_country": "source country: a code (DE), private, documentation, ... or unknown",
               "dst_country": "destination country, as --src-country", "country": "either country",
               "by": "top, explore: src, dst, pair, port, src_port, dst_port, protocol, exporter, in_if, out_if, "
                     "src_as, dst_as, dscp, src_country, dst_country; or two of them (not pair) joined by a comma, "
                     "their pairs: in_if,out_if",
               "metric": "top, explore: bytes, packets or flows",
               "step": "series: seconds per point; explore: seconds per step (default: about 300 steps)",
               "order": "flows: time (newest first, default), bytes or packets (largest first)"}
EXIT_QUERY_ERROR, EXIT_UNREACHABLE = 2, 3
# commands whose own parser lives in their module: what `flowlens --help` says of each
PASS_THROUGH_HELP = {"replay": "send the NetFlow/IPFIX/sFlow datagrams of a pcap or pcapng capture to a collector",
                     "analyze": "run the analyzers over a stored time range and print what they find",
                     "advisory": "advisory ack KEY: acknowledge an open advisory (it stops notifying)",
                     "silence": "silence add|list|remove: keep matching advisories from notifying for a while"}
# exporters table: these first (when present), then every other key any row has
EXPORTER_COLUMNS = ("exporter", "observation_domain", "version", "collector", "packets", "flows", "store_flows",
                    "sequence_lost", "decode_errors", "templates", "first_seen", "last_seen", "store_last_seen")


def _limit(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a whole number of rows, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"wants at least 1 row, got {n}")
    return n


def _step(text: str) -> int | float:
    """Seconds; whole ones as an int, which every op takes (rollups refuses 3600.0)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants seconds, got {text!r}") from None
    return int(value) if value.is_integer() else value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flowlens", description="FlowLens NetFlow/IPFIX collector and analyzer")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="run every service as a child process (Ctrl-C stops them in order)")
    up.add_argument("--config", help="config file (default: $FLOWLENS_CONFIG, else built-in defaults)")
    up.add_argument("--services", default=",".join(("store", "analyzer", "web", "collector")),
                    help="comma-separated services to run (default: store, analyzer, web, collector, and the "
                         "notifier and poller where the store runs once notify.targets / snmp.targets are set)")
    up.add_argument("--collector-config", action="append", default=[], metavar="PATH",
                    help="run one more collector with this config (repeatable)")
    up.add_argument("--stop-timeout", type=float, default=30.0, help="seconds each service gets to stop")
    up.add_argument("--max-backoff", type=float, default=MAX_BACKOFF_S, metavar="SECONDS",
                    help=f"longest wait before restarting a crash-looping service (default {MAX_BACKOFF_S:g})")
    up.add_argument("--stable-after", type=float, default=STABLE_AFTER_S, metavar="SECONDS",
                    help=f"a restarted service up this long is well again: its backoff resets (default {STABLE_AFTER_S:g})")
    for name in SERVICES:
        s = sub.add_parser(name, help=f"run the {name} service in the foreground", add_help=False)
        s.add_argument("rest", nargs=argparse.REMAINDER)
    q = sub.add_parser("query", help="query the store", description="ops: " + ", ".join(OPS))
    q.add_argument("op", choices=sorted(OPS))
    for name in FILTERS:
        q.add_argument("--" + name.replace("_", "-"), dest=name, type=_step if name == "step" else str,
                       help=FILTER_HELP.get(name))
    q.add_argument("--scaled", action="store_true", default=None,
                   help="top, series, rollups: bytes and packets times each flow's sampling rate")
    q.add_argument("--spread", action="store_true", default=None,
                   help="series: spread each flow's bytes and packets over its lifetime")
    q.add_argument("--since", help="15m, 24h, 7d or an ISO 8601 time")
    q.add_argument("--until", help="same forms as --since")
    q.add_argument("--limit", type=_limit, help="rows wanted, at least 1 (flows: pages are followed; default 100)")
    q.add_argument("--format", choices=FORMATS, default="table")
    q.add_argument("--endpoint", help="store query endpoint (default: query.endpoint of the config)")
    q.add_argument("--config", help="config file for the endpoint and timeouts")
    for name, summary in PASS_THROUGH_HELP.items():  # advisory ack KEY, silence add|list|remove: notecli
        r = sub.add_parser(name, help=summary, add_help=False)
        r.add_argument("rest", nargs=argparse.REMAINDER)
    c = sub.add_parser("config", help="config tools")
    c.add_argument("action", choices=["check"])
    c.add_argument("path")
    u = sub.add_parser("users", help="the web's accounts (web.users_file)",
                       description="add, remove or list the web's accounts; passwords are stored as scrypt hashes")
    u.add_argument("action", choices=["add", "remove", "list"])
    u.add_argument("name", nargs="?", help="account name (add, remove)")
    u.add_argument("--role", choices=["viewer", "operator"], default="viewer",
                   help="viewer: every page; operator: also acknowledges and silences advisories (default viewer)")
    u.add_argument("--file", help="accounts file (default: web.users_file of the config)")
    u.add_argument("--config", help="config file naming web.users_file")
    u.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of standard input instead of prompting twice")
    k = sub.add_parser("keys", help="CURVE key pairs for the bus and the query socket",
                       description="generate a CURVE key pair: DIR/NAME.key (public) and DIR/NAME.key_secret")
    k.add_argument("action", choices=["generate"])
    k.add_argument("--dir", required=True, help="directory to write the key files to (made, mode 0700, if missing)")
    k.add_argument("--name", required=True, help="key name: store, or the client's (collector-edge1, analyzer, web)")
    k.add_argument("--force", action="store_true", help="replace a key pair of that name")
    return p


def run_keys(args: argparse.Namespace, err=None) -> int:
    from .curve import generate_keys

    err = err or sys.stderr
    try:
        public, secret = generate_keys(args.dir, args.name, force=args.force)
    except (OSError, ValueError) as e:
        print(f"flowlens keys: {e}", file=err)
        return 2
    print(f"flowlens keys: wrote {public} (public: give it out) and {secret} (secret: keep it on this box)", file=err)
    return 0


def run_users(args: argparse.Namespace, out=None, err=None, stdin=None) -> int:
    from . import accounts

    out, err, stdin = out or sys.stdout, err or sys.stderr, stdin or sys.stdin
    try:
        path = args.file or config_from_env_or_path(args.config)["web.users_file"]
        if not path:
            raise ConfigError("no accounts file: give --file PATH or set web.users_file in the config")
        if args.action == "list":
            for a in accounts.load(path).values():
                out.write(f"{a.name}\t{a.role}\n")
            return 0
        if not args.name:
            raise ConfigError(f"users {args.action} needs an account name")
        if args.action == "remove":
            accounts.remove(path, args.name)
            print(f"flowlens users: removed {args.name} from {path}", file=err)
            return 0
        accounts.check_name(args.name)
        if args.password_stdin:
            password = stdin.readline().rstrip("\r\n")
        else:
            import getpass
            password = getpass.getpass(f"password for {args.name}: ")
            if getpass.getpass("again: ") != password:
                raise ConfigError("the two passwords differ")
        new = accounts.add(path, args.name, args.role, password)
    except (ConfigError, accounts.AccountsError) as e:
        print(f"flowlens users: {e}", file=err)
        return 2
    print(f"flowlens users: {'added' if new else 'updated'} {args.name} ({args.role}) in {path}", file=err)
    return 0


def run_query(args: argparse.Namespace, out=None, err=None) -> int:
    from .client import StoreClient, StoreError, StoreUnavailable

    out, err = out or sys.stdout, err or sys.stderr
    given = {k: getattr(args, k) for k in FILTERS + ("since", "until") if getattr(args, k) is not None}
    try:
        normalise_flow_filters(given)
        given.update({k: True for k in ("scaled", "spread") if getattr(args, k, None)})  # fail early, with the same reasons the store would give
        cfg = config_from_env_or_path(args.config)
    except (QueryError, ConfigError) as e:
        print(f"flowlens query: {e}", file=err)
        return EXIT_QUERY_ERROR
    try:
        client = StoreClient.from_config(cfg, args.endpoint)
    except ConfigError as e:
        print(f"flowlens query: {e}", file=err)
        return EXIT_QUERY_ERROR
    try:
        if args.op == "flows":
            rows = flow_rows(client, 100 if args.limit is None else args.limit, given)
            out.write(render_flows(rows, args.format))
        else:
            if args.limit is not None:
                given["limit"] = args.limit
            reply = client.request(args.op, **client._times(given))
            out.write(render_reply(args.op, reply, args.format))
    except (StoreError, QueryError) as e:
        print(f"flowlens query: {e}", file=err)
        return EXIT_QUERY_ERROR
    except StoreUnavailable as e:
        print(f"flowlens query: {e}", file=err)
        return EXIT_UNREACHABLE
    finally:
        client.close()
    return 0


def render_flows(rows: list[dict], fmt: str) -> str:
    """Flows as text: a table of FLOW_TABLE_COLUMNS, or every schema column (CSV: the header even
    without rows, as the web's /flows.csv writes it)."""
    from .schema import COLUMN_NAMES

    return render(rows, fmt, FLOW_TABLE_COLUMNS, columns=COLUMN_NAMES)


def render_reply(op: str, reply: dict, fmt: str) -> str:
    """A non-flow reply as text. JSON and CSV are the rows of ``reply_rows``; a person reading a
    table gets ``status`` as key/value sections and ``exporters`` with its collectors below."""
    if fmt == "table" and op == "status":
        body = {k: v for k, v in reply.items() if k != "ok"}
        if isinstance(body.get("services"), list):  # each service's effective config: --format json has it
            body["services"] = [{k: v for k, v in s.items() if k != "config"} if isinstance(s, dict) else s
                                for s in body["services"]]
        return render_sections(body, "store")
    if fmt == "table" and op == "overview":
        return render_overview(reply)
    if op == "names":
        rows = names_rows(reply)
        if fmt != "table":
            return render(rows, fmt, NAMES_COLUMNS, columns=NAMES_COLUMNS)
        return (render_sections({"exporters": reply.get("exporters") or []}, "names") +
                _table("interfaces", [{k: r[k] for k in ("exporter", "ifindex", "name", "description", "speed_bps", "source")}
                                      for r in rows if r["ifindex"] != ""], 2))
    if op == "explore":
        return render(explore_rows(reply, fmt), fmt, columns=("time", "key", reply.get("metric", "bytes")))
    if op == "ifcounters":  # one row per step
        keys = ("in_bps", "out_bps", "in_pps", "out_pps", "in_errors", "out_errors", "in_discards", "out_discards",
                "resets")
        return render([{"time": t, **{k: reply[k][i] for k in keys}, "speed_bps": reply.get("speed_bps", 0)}
                       for i, t in enumerate(reply.get("times", []))], fmt, columns=("time", *keys, "speed_bps"))
    if fmt == "table" and op == "exporters":
        text = render(reply_rows(op, reply), fmt, _union_columns(reply.get("exporters") or [], EXPORTER_COLUMNS))
        for c in reply.get("collectors") or []:
            text += "\n" + render_sections({k: v for k, v in c.items() if k != "collector"},
                                           f"collector {c.get('collector', '?')}")
        return text
    return render(reply_rows(op, reply), fmt, columns=reply_columns(op))


def render_overview(reply: dict) -> str:
    """The dashboard's reply for a person: its window, then the series and each top as the series
    and top ops print them."""
    text = render_sections({k: v for k, v in reply.items() if k not in ("ok", "series", "top")}, "overview")
    parts = [("series", reply.get("series") or {})]
    parts += [(f"top {by}", top) for by, top in (reply.get("top") or {}).items() if isinstance(top, dict)]
    for title, part in parts:
        op = title.split()[0]
        text += f"\n{title}\n" + render(reply_rows(op, part), "table", columns=reply_columns(op))
    return text


def explore_rows(reply: dict, fmt: str) -> list[dict]:
    """An explore reply for a person (table): one row per key, its total, share and busiest step's
    value, then other; for scripts (json, csv): one row per step and key, other included."""
    metric = reply.get("metric", "bytes")
    series = [*reply.get("series", []), {"key": "other", **(reply.get("other") or {"values": [], "total": 0})}]
    if fmt != "table":
        return [{"time": t, "key": s["key"], metric: v} for s in series for t, v in zip(reply.get("times", []), s["values"])]
    everything = (reply.get("totals") or {}).get(metric) or 0
    return [{"key": s["key"], metric: s["total"], "share_%": f"{100 * s['total'] / everything:.1f}" if everything else "",
             f"peak_{metric}_per_step": max(s["values"], default=0)} for s in series]


NAMES_COLUMNS = ("exporter", "exporter_name", "site", "dns", "ifindex", "name", "description", "speed_bps", "source")


def names_rows(reply: dict) -> list[dict]:
    """The names reply as one row per interface beside its exporter's names (an exporter naming no
    interface: one row with an empty ifindex), for json and csv."""
    by_exporter: dict[str, list[dict]] = {}
    for i in reply.get("interfaces") or []:
        by_exporter.setdefault(i.get("exporter", ""), []).append(i)
    rows = []
    for e in reply.get("exporters") or []:
        head = {"exporter": e.get("exporter", ""), "exporter_name": e.get("name", ""), "site": e.get("site", ""),
                "dns": e.get("dns", "")}
        for i in by_exporter.pop(head["exporter"], None) or [{}]:
            rows.append({**head, **{k: i.get(k, "") for k in NAMES_COLUMNS[4:]}})
    return rows


def _union_columns(rows: list[dict], preferred: tuple[str, ...]) -> list[str]:
    """``preferred`` columns any row has, then every other key of any row, in first-seen order."""
    names = [n for n in preferred if any(n in r for r in rows)]
    for r in rows:
        names.extend(k for k in r if k not in names)
    return names


def render_sections(obj: dict, title: str, indent: int = 0) -> str:
    """A nested reply as readable text: scalars as aligned ``key  value`` lines under a heading,
    nested maps as indented sections, lists of maps (and maps of maps) as small tables."""
    pad = " " * indent
    lines = [pad + title]
    scalars = {k: v for k, v in obj.items() if not isinstance(v, (dict, list))
               or (isinstance(v, list) and not any(isinstance(x, dict) for x in v))}
    width = max((len(str(k)) for k in scalars), default=0)
    for k, v in scalars.items():
        text = ", ".join(_shown(str(k), x) for x in v) if isinstance(v, list) else _shown(str(k), v)
        lines.append(f"{pad}  {str(k).ljust(width)}  {text or '-'}".rstrip())
    body = "\n".join(lines) + "\n"
    for k, v in obj.items():
        if k in scalars:
            continue
        if isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values()):
            body += _table(str(k), [{"name": name, **_flat(x)} for name, x in v.items()], indent + 2)
        elif isinstance(v, dict):
            body += render_sections(v, str(k), indent + 2) if v else f"{pad}  {k}  -\n"
        else:
            body += _table(str(k), [_flat(x) if isinstance(x, dict) else {"value": x} for x in v], indent + 2)
    return body


def _shown(name: str, value) -> str:
    """A scalar for a person: epoch-ms times (also ``*_time`` keys) as UTC, the rest as output shows them."""
    return _human("time" if name.endswith("_time") else name, value)


def _flat(row: dict) -> dict:
    """One level of nesting spread into dotted columns (``process.rss_bytes``)."""
    out: dict = {}
    for k, v in row.items():
        if isinstance(v, dict) and v:
            out.update({f"{k}.{k2}": v2 for k2, v2 in v.items()})
        else:
            out[k] = v
    return out


def _table(title: str, rows: list[dict], indent: int) -> str:
    pad = " " * indent
    if not rows:
        return f"{pad}{title}  (none)\n"
    table = render(rows, "table")
    return pad + title + "\n" + "".join(pad + "  " + line + "\n" for line in table.splitlines())


def flow_rows(client, limit: int, filters: dict) -> list[dict]:
    """Up to ``limit`` flows, following the cursor while the store returns pages."""
    rows: list[dict] = []
    cursor = None
    while len(rows) < limit:
        page = client.flows(limit=limit - len(rows), cursor=cursor, **filters)
        rows.extend(page.rows())
        cursor = page.next_cursor
        if not cursor or len(page) == 0:
            break
    return rows[:limit]


def exec_module(module: str, argv: list[str]) -> None:
    os.execv(sys.executable, [sys.executable, "-m", module, *argv])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Pass-through commands hand their arguments on untouched (argparse would eat "--config").
    command, rest = (argv[0], argv[1:]) if argv else (None, [])
    if command in SERVICES:
        exec_module(f"flowlens_{command}", rest)
    if command == "analyze":
        exec_module("flowlens_analyzer", ["analyze", *rest])
    if command == "replay":
        from .replay import main as replay_main  # written with the collector; imported only when used
        return replay_main(rest)
    if command in ("advisory", "silence"):  # operators' acknowledgements and silences (flowmodel.notes)
        from .notecli import main as notes_main
        return notes_main(argv)
    args = build_parser().parse_args(argv)
    if args.command == "query":
        return run_query(args)
    if args.command == "users":
        return run_users(args)
    if args.command == "keys":
        return run_keys(args)
    if args.command == "config":
        try:
            cfg = load_config(args.path)
        except ConfigError as e:
            print(f"flowlens config: {e}", file=sys.stderr)
            return 2
        for note in cfg.deprecations:
            print(f"flowlens config: warning: {note}", file=sys.stderr)
        import yaml
        sys.stdout.write(yaml.safe_dump(cfg.as_nested(), sort_keys=False))
        return 0
    from .supervisor import Supervisor
    return Supervisor.from_args(args).run()


if __name__ == "__main__":
    sys.exit(main())

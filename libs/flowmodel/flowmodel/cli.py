"""The ``flowlens`` command: run the services (``up``, or one of them), query the store, replay a
capture, run an offline analysis, check a config, manage the web's accounts and the CURVE keys. Each subcommand hands off to the module that
does the work; service packages are started as processes, never imported from here.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys

from .config import ConfigError, config_from_env_or_path, load_config
from .output import FORMATS, render_flows, render_reply
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
OPS_WITHOUT_ARGS = ("ping", "status", "exporters", "names")
MAX_LIMIT = 10 ** 12  # more rows than any store holds; a bigger number would not fit the protocol's integers
MAX_STEP_S = 10 ** 9
MAX_UP_WAIT_S = 86_400  # a day: longer than any stop, backoff or stable spell anyone means  # about 31 years: more than any op takes
# commands whose own parser lives in their module: what `flowlens --help` says of each
PASS_THROUGH_HELP = {"replay": "send the NetFlow/IPFIX/sFlow datagrams of a pcap or pcapng capture to a collector",
                     "analyze": "run the analyzers over a stored time range and print what they find",
                     "advisory": "advisory ack KEY: acknowledge an open advisory (it stops notifying)",
                     "silence": "silence add|list|remove: keep matching advisories from notifying for a while"}
# exporters table: these first (when present), then every other key any row has


def _limit(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a whole number of rows, got {text!r}") from None
    if not 1 <= n <= MAX_LIMIT:  # 10**30 rows reached msgpack as an int it could not pack (a traceback)
        raise argparse.ArgumentTypeError(f"wants 1 to {MAX_LIMIT:,} rows, got {text[:40]}")
    return n


def _step(text: str) -> int | float:
    """Seconds; whole ones as an int, which every op takes (rollups refuses 3600.0)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants seconds, got {text!r}") from None
    if not 0 <= value <= MAX_STEP_S:  # NaN fails too; 1e30 became an int msgpack could not pack (a traceback)
        raise argparse.ArgumentTypeError(f"wants seconds from 0 to {MAX_STEP_S:,}, got {text[:40]!r}")
    return int(value) if value.is_integer() else value


def _seconds(text: str) -> float:
    """up's --stop-timeout, --max-backoff, --stable-after: NaN, inf and -1 were taken as given."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants seconds, got {text[:40]!r}") from None
    if not 0 < value <= MAX_UP_WAIT_S:
        raise argparse.ArgumentTypeError(f"wants seconds above 0 and at most {MAX_UP_WAIT_S:,}, got {text[:40]!r}")
    return value


def _endpoint(text: str) -> str:
    """--endpoint, checked as query.endpoint is in a config (zmq's connect raised a traceback on 'garbage')."""
    from .settings import SETTINGS

    try:
        return SETTINGS["query.endpoint"].parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


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
    up.add_argument("--stop-timeout", type=_seconds, default=30.0, help="seconds each service gets to stop")
    up.add_argument("--max-backoff", type=_seconds, default=MAX_BACKOFF_S, metavar="SECONDS",
                    help=f"longest wait before restarting a crash-looping service (default {MAX_BACKOFF_S:g})")
    up.add_argument("--stable-after", type=_seconds, default=STABLE_AFTER_S, metavar="SECONDS",
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
    q.add_argument("--endpoint", type=_endpoint, help="store query endpoint (default: query.endpoint of the config)")
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
    except OSError as e:  # "[Errno 2] No such file or directory: ''" named neither option
        where = "--name" if e.errno == errno.ENAMETOOLONG and len(args.name) > 200 else "--dir"
        print(f"flowlens keys: {where}: cannot write {str(e.filename or args.dir)[:200]!r}: {e.strerror or e}", file=err)
        return 2
    except ValueError as e:
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
    if args.op in OPS_WITHOUT_ARGS:  # the store answers these whatever else is sent: say it was not used
        extra = [k for k in (*given, "limit", "scaled", "spread") if k in given or getattr(args, k, None) is not None]
        if extra:
            print(f"flowlens query: {args.op} takes no options, got " + ", ".join("--" + k.replace("_", "-") for k in extra),
                  file=err)
            return EXIT_QUERY_ERROR
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

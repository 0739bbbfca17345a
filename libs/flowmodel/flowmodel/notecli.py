"""``flowlens advisory ack KEY`` and ``flowlens silence add|list|remove``: operators' notes
(flowmodel.notes) sent to the store's events socket, held until it confirms them, and read back with
the ``notes`` query op. Exit codes: 0 done, 2 bad arguments or config, 3 the store did not answer."""
from __future__ import annotations

import argparse
import getpass
import json
import sys

from .config import ConfigError, config_from_env_or_path, parse_duration

EXIT_OK, EXIT_BAD, EXIT_UNREACHABLE = 0, 2, 3
CONFIRM_TIMEOUT_S = 10.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flowlens", description="acknowledge advisories and silence findings")
    p.add_argument("--config", help="config file (default: $FLOWLENS_CONFIG, else built-in defaults)")
    sub = p.add_subparsers(dest="command", required=True)
    adv = sub.add_parser("advisory", help="advisories").add_subparsers(dest="action", required=True)
    ack = adv.add_parser("ack", help="acknowledge an open advisory: it stays open but stops notifying")
    ack.add_argument("key", help="the advisory key, e.g. 'scan:10.0.5.20'")
    sil = sub.add_parser("silence", help="silences").add_subparsers(dest="action", required=True)
    add = sil.add_parser("add", help="stop notifying advisories that match, until it expires")
    add.add_argument("--analyzer", help="analyzer name, e.g. scan")
    add.add_argument("--subject", help="subject pattern, e.g. '10.0.5.*'")
    add.add_argument("--address", help="an address the advisory is about, e.g. 10.0.5.20")
    add.add_argument("--network", help="a network the advisory's address lies in, e.g. 10.0.5.0/24")
    add.add_argument("--for", dest="duration", default="24h", help="how long it lasts (30m, 24h, 7d; default 24h)")
    lst = sil.add_parser("list", help="silences in force (--all: expired ones too)")
    lst.add_argument("--all", action="store_true")
    lst.add_argument("--format", choices=("table", "json"), default="table")
    rm = sil.add_parser("remove", help="lift a silence now")
    rm.add_argument("id")
    for q in (ack, add, rm):
        q.add_argument("--comment", default="", help="why ('10.0.5.20 is our Nessus scanner')")
        q.add_argument("--by", default=None, help="who (default: the local user name)")
    for q in (ack, add, lst, rm):
        q.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return p


def main(argv: list[str], out=None, err=None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    args = _parser().parse_args(argv)
    try:
        cfg = config_from_env_or_path(args.config)
    except ConfigError as e:
        print(f"flowlens: {e}", file=err)
        return EXIT_BAD
    from .client import StoreClient, StoreError, StoreUnavailable

    client = StoreClient.from_config(cfg)
    try:
        if args.command == "advisory":
            return _ack(cfg, client, args, out, err)
        if args.action == "list":
            return _list(client, args, out)
        return _silence(cfg, client, args, out, err)
    except StoreUnavailable as e:
        print(f"flowlens: {e}", file=err)
        return EXIT_UNREACHABLE
    except (StoreError, ValueError) as e:
        print(f"flowlens: {e}", file=err)
        return EXIT_BAD
    finally:
        client.close()


def _who(args) -> str:
    if args.by:
        return args.by
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _ack(cfg, client, args, out, err) -> int:
    from .timefmt import iso

    found = [a for a in client.advisories(include_resolved=True, limit=10000) if a["key"] == args.key]
    if not found:
        print(f"flowlens: no advisory {args.key!r} in the store (flowlens query advisories lists them)", file=err)
        return EXIT_BAD
    adv = found[0]
    if adv["state"] == "resolved":
        print(f"flowlens: {args.key} is resolved; nothing to acknowledge", file=err)
        return EXIT_BAD
    note = {"kind": "ack", "id": adv["key"], "episode": adv["first_seen"], "by": _who(args), "comment": args.comment,
            "created_at": _now_ms()}
    code = _send(cfg, note, err)
    if code == EXIT_OK:
        print(f"acknowledged {adv['key']} (open since {iso(adv['first_seen'])}); it notifies again if it returns "
              "after resolving", file=out)
    return code


def _silence(cfg, client, args, out, err) -> int:
    from .notes import SILENCE_MATCHES, new_silence
    from .timefmt import iso

    now = _now_ms()
    if args.action == "remove":
        known = [n for n in client.notes(kind="silence", active=False) if n.get("id") == args.id]
        if not known:
            print(f"flowlens: no silence {args.id!r} (flowlens silence list --all lists them)", file=err)
            return EXIT_BAD
        note = {**known[0], "expires_at": now, "removed_by": _who(args),
                "comment": args.comment or known[0].get("comment", "")}
        code = _send(cfg, note, err)
        if code == EXIT_OK:
            print(f"lifted silence {args.id}", file=out)
        return code
    if not any(getattr(args, k) for k in SILENCE_MATCHES):  # the note's own check names fields, not options
        print("flowlens: silence add needs at least one of " + ", ".join(f"--{k}" for k in SILENCE_MATCHES),
              file=err)
        return EXIT_BAD
    try:
        duration_s = parse_duration(args.duration)
        if duration_s <= 0:
            raise ValueError(f"a silence must last longer than zero, got {args.duration!r}")
    except ValueError as e:  # its reason quotes the value but not the option it came from
        print(f"flowlens: --for: {e}", file=err)
        return EXIT_BAD
    note = new_silence({k: getattr(args, k) for k in SILENCE_MATCHES}, duration_s, _who(args),
                       args.comment, now)  # ValueError: no match given, a bad address
    code = _send(cfg, note, err)
    if code == EXIT_OK:
        print(f"silence {note['id']} until {iso(note['expires_at'])}", file=out)
    return code


def _list(client, args, out) -> int:
    from .timefmt import iso

    rows = client.notes(kind="silence", active=not args.all)
    if args.format == "json":
        for n in rows:
            out.write(json.dumps(n) + "\n")
        return EXIT_OK
    out.write("id        until                     by          matches / comment\n")
    for n in rows:
        matches = " ".join(f"{k}={n[k]}" for k in ("analyzer", "subject", "address", "network") if n.get(k))
        out.write(f"{n['id']:<9} {iso(n['expires_at']):<25} {str(n.get('by', '')):<11} {matches}"
                  + (f"  # {n['comment']}" if n.get("comment") else "") + "\n")
    return EXIT_OK


def _send(cfg, note: dict, err) -> int:
    from .notes import send_note

    if not send_note(cfg, note, "cli", CONFIRM_TIMEOUT_S):
        print(f"flowlens: the store at {cfg['bus.events_endpoint']} did not confirm the note within "
              f"{CONFIRM_TIMEOUT_S:g} s; it may not be kept: look with flowlens silence list or flowlens query notes",
              file=err)
        return EXIT_UNREACHABLE
    return EXIT_OK


def _now_ms() -> int:
    import time

    return time.time_ns() // 1_000_000

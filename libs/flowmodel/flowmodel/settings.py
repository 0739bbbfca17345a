"""Every config key, once: its value type, its default and its meaning (the README's key table and
configs/flowlens.yaml are checked against this by tests/unit/flowmodel).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .configplaces import (_dir_path, _emails, _endpoint, _file_path, _host, _listen, _public_url,
                           _required_file_path)
from .configtypes import (_batch_flows, _bool, _datagram_size, _duration, _exporters, _float, _fraction, _int,
                          _level, _log_format, _networks, _notify_rules, _notify_targets, _port, _port_or_off,
                          _pos_duration, _positive_int, _prefix_v4, _prefix_v6, _receive_group, _report_offset,
                          _report_send_at, _snmp_targets, _str, _str_list, _warm_ranges, parse_size, ranged)


@dataclass(frozen=True)
class Setting:
    parse: Callable[[Any], Any]
    default: Any
    doc: str


# ---------------------------------------------------------------- every key, once
# Sections: log, bus, query, security, collector, store, analysis, web, notify, snmp. Add a key here, in its section, with
# its documentation; tests/unit/flowmodel/test_config.py fails when the README does not list it.
SETTINGS: dict[str, Setting] = {
    "log.level": Setting(_level, "info", "debug, info, warning or error"),
    "log.format": Setting(_log_format, "kv", "kv (key=value) or json, one line per event"),

    "bus.publish_endpoint": Setting(_endpoint, "tcp://127.0.0.1:5559", "where publishers (collectors, analyzer) connect: the store's XSUB"),
    "bus.subscribe_endpoint": Setting(_endpoint, "tcp://127.0.0.1:5560", "where subscribers (store, analyzer) connect: the store's XPUB"),
    "bus.high_water_mark": Setting(ranged(_int, 1, 1_000_000), 1000, "messages a bus socket queues before it drops (publishers) or stops reading; sockets carrying flow batches queue fewer (bus.queue_bytes)"),
    "bus.queue_bytes": Setting(ranged(parse_size, 1024, 16 << 30, " bytes"), 32 << 20, "memory one bus socket may hold in queued flow batches: its message limit is this over (collector.batch_max_flows x 135 bytes), at least 4"),
    "bus.events_endpoint": Setting(_endpoint, "tcp://127.0.0.1:5561", "where the analyzer and flowlens up send advisories to the store, apart from flow batches: the store's events socket, which confirms each one once it is written"),
    "bus.events_high_water_mark": Setting(ranged(_int, 1, 1_000_000), 1000, "messages the events socket queues at each end; a sender holds the rest until the store takes them"),
    "bus.events_unconfirmed_max": Setting(ranged(_int, 1, 10_000_000), 10_000, "advisories a sender (analyzer, flowlens up) keeps until the store confirms them, about 1 KiB each; past it the oldest is dropped and counted as lost (advisories_lost)"),
    "bus.events_resend_timeout": Setting(ranged(_pos_duration, 0.1, 3600, " s"), 3.0, "when the store has confirmed none of the advisories sent for this long, the sender sends what it holds again, from the oldest"),

    "query.endpoint": Setting(_endpoint, "tcp://127.0.0.1:5555", "the store's query (REQ/REP) address that clients connect to"),
    "query.timeout": Setting(ranged(_pos_duration, 0.01, 3600, " s"), 5.0, "how long a client waits for one reply before retrying"),
    "query.retries": Setting(ranged(_int, 0, 100), 2, "retries after a timeout (Lazy Pirate) before the store counts as unreachable"),
    "query.max_reply_bytes": Setting(ranged(parse_size, 1 << 20, 1 << 30, " bytes"), 64 << 20, "largest reply the store sends (a bigger one becomes an error reply asking for a narrower query) and a client reads"),

    "security.server_key": Setting(_file_path, "", "the store's secret key file (NAME.key_secret from `flowlens keys generate`); set, the bus, events and query sockets speak CURVE; empty, they bind to loopback only"),
    "security.authorized_keys": Setting(_dir_path, "", "directory of the client public keys (NAME.key) the store admits; re-read when it changes, no restart needed"),
    "security.client_key": Setting(_file_path, "", "this client's secret key file (collector, analyzer, web, flowlens up, flowlens query); with security.store_public_key"),
    "security.store_public_key": Setting(_file_path, "", "the store's public key file (its NAME.key), which clients check the store against"),
    "security.allow_insecure_bind": Setting(_bool, False, "let the store bind its bus, events and query sockets beyond loopback without CURVE: only on a network nobody else reaches"),

    "collector.bind_address": Setting(_host, "0.0.0.0", "address the UDP listeners bind to (:: for IPv6 and IPv4)"),
    "collector.netflow_port": Setting(_port, 2055, "UDP port for NetFlow v5/v9 (IPFIX also accepted)"),
    "collector.ipfix_port": Setting(_port_or_off, 4739, "UDP port for IPFIX (NetFlow also accepted); 0 disables"),
    "collector.sflow_port": Setting(_port_or_off, 6343, "UDP port for sFlow v5 (NetFlow and IPFIX also accepted; every port takes sFlow too); 0 disables"),
    "collector.sflow_counter_interfaces": Setting(ranged(_int, 1, 1_000_000), 16384, "(sFlow agent, sub-agent, ifIndex) whose last if-counters sample the collector keeps to take deltas (about 300 bytes each); past it the least recently heard is forgotten (counted) and its next sample only sets a baseline"),
    "collector.buffer_size": Setting(_datagram_size, 65535, "UDP read buffer: the largest datagram read, in bytes (65535 = any UDP payload); a longer one is counted (truncated_datagrams) and dropped"),
    "collector.socket_buffer": Setting(ranged(parse_size, 4096, (1 << 31) - 1, " bytes"), 8 << 20, "kernel receive buffer (SO_RCVBUF) asked for per UDP socket; it absorbs bursts while the collector decodes; the granted size is logged"),
    "collector.receive_group": Setting(_receive_group, 512, "datagrams received (recvmmsg) and decoded together at most; each has a 64 KiB receive slot of address space, resident only as far as datagrams fill it"),
    "collector.batch_max_flows": Setting(_batch_flows, 16384, "a batch is published when it holds this many flows (under load; a quiet exporter's go out by age)"),
    "collector.batch_max_age": Setting(ranged(_pos_duration, 0.001, 3600, " s"), 0.2, "or when its oldest flow waited this long"),
    "collector.instance_id": Setting(_str, "", "source id on the bus, the same across restarts so a restarted collector replaces its old rows and series; empty = collector@host/port (the netflow port)"),
    "collector.stats_interval": Setting(ranged(_pos_duration, 0.05, 3600, " s"), 5.0, "how often exporter health events are published"),
    "collector.max_exporters": Setting(ranged(_int, 1, 1_000_000), 1000, "(exporter, observation domain) pairs the collector keeps counters for; beyond it their datagrams are still decoded, but counted in one overflow row (exporter other) that says how many pairs and addresses were folded into it; when full, a row silent for collector.template_lifetime makes room"),
    "collector.template_path": Setting(_file_path, "data/templates.json", "file where v9/IPFIX templates persist across restarts; empty disables"),
    "collector.max_templates_per_exporter": Setting(ranged(_int, 1, 65536), 1024, "templates kept per exporter; at the cap the exporter's least recently refreshed transport session is evicted (counted)"),
    "collector.template_fields_total_max": Setting(ranged(_int, 1, 100_000_000), 65536, "template fields kept for all exporters together (about 200 bytes each); at the cap the least recently refreshed session is evicted (counted)"),
    "collector.template_lifetime": Setting(_pos_duration, 5400.0, "templates of a transport session not refreshed for this long expire (RFC 7011 8.4: 3 x a 30 min refresh)"),
    "collector.pending_max_bytes": Setting(ranged(parse_size, 1024, 1 << 40, " bytes"), 2 << 20, "data sets per exporter held while waiting for their template, each charged its length + 128 bytes"),
    "collector.pending_total_max_bytes": Setting(ranged(parse_size, 1024, 1 << 40, " bytes"), 4 << 20, "the same for all exporters together; when full the oldest held queue is dropped (counted)"),
    "collector.pending_max_age": Setting(_pos_duration, 1800.0, "how long data waits for its template before it is counted as expired"),
    "collector.spool_path": Setting(_dir_path, "data/spool", "directory where flow batches the store has not confirmed wait on disk once collector.unacked_max_bytes is full, and across a restart; empty keeps them in memory only"),
    "collector.unacked_max_bytes": Setting(ranged(parse_size, 1 << 20, 1 << 40, " bytes"), 32 << 20, "published flow batches the store has not yet confirmed, held in memory (about 30 bytes a flow); older ones go to the spool"),
    "collector.spool_max_bytes": Setting(ranged(parse_size, 1 << 20, 1 << 50, " bytes"), 512 << 20, "disk the spool may use: about 90 s of 100,000 flows/s (6,000,000 flows x ~30 bytes, x 2 for spread-out addresses); past it the oldest spooled flows are dropped and counted as lost"),
    "collector.resend_timeout": Setting(ranged(_pos_duration, 0.1, 3600, " s"), 3.0, "when the store has confirmed nothing for this long, the collector sends what it holds again, from the oldest batch"),

    "storage.ring_buffer_duration": Setting(_pos_duration, 600.0, "how long flows stay in memory for recent queries (10m); the ring also holds at most storage.ring_capacity flows, so above ring_capacity / duration flows/s (1,000 with the defaults) it holds less: the store logs how many minutes it holds at the current rate"),
    "storage.ring_capacity": Setting(ranged(_int, 1, 100_000_000), 600_000, "flows the in-memory ring holds (about 26 bytes each: all but the newest 32,768 in lz4-compressed blocks); the oldest are overwritten"),
    "storage.ring_decoded_cache": Setting(ranged(parse_size, 0, 1 << 30, " bytes"), 4 << 20, "whole columns decoded from the ring's compressed blocks (time, addresses: what a filter reads), kept for the next query, the least recently used dropped first; about 1.3 MB per block for a host's flow page (0: none)"),
    "storage.ring_overview_cache": Setting(ranged(parse_size, 0, 1 << 30, " bytes"), 12 << 20, "the dashboard overview's sums per source, destination and protocol of each of the ring's sealed blocks, kept until the block is evicted so the next overview merges them instead of grouping the rows again (40 % of its CPU on a full ring); a block whose sums do not fit is grouped from its rows each time; about 0.7 MB per block of one IPv4 destination per flow (0: none)"),
    "storage.sqlite_path": Setting(_required_file_path, "data/flowlens.db", "SQLite file of the warm tier (WAL mode); the seed's ./flowlens.db works as well: data/ keeps the file, its -wal and -shm companions and templates.json in one directory, the one compose mounts as a volume"),
    "storage.sqlite_retention": Setting(_pos_duration, 3 * 86400.0, "how long raw flows stay in SQLite"),
    "storage.partition_interval": Setting(ranged(_pos_duration, 60, 7 * 86400, " s"), 3600.0, "time span of one flow table; pruning drops whole tables"),
    "storage.max_partitions": Setting(ranged(_int, 1, 10_000_000), 200, "flow tables at most before flows dated outside [now - retention, now + 1 day] are dropped (counted per exporter): a broken exporter clock cannot grow the schema without end"),
    "storage.prune_interval": Setting(_pos_duration, 900.0, "how often expired partitions are dropped"),
    "storage.rollup_retention": Setting(_pos_duration, 7 * 86400.0, "how long 1-minute rollups (per exporter and destination prefix) are kept"),
    "storage.rollup_5min_retention": Setting(_pos_duration, 30 * 86400.0, "how long 5-minute rollups (per source, destination, port, protocol, exporter) are kept"),
    "storage.rollup_hourly_retention": Setting(_pos_duration, 365 * 86400.0, "how long hourly rollups are kept (every dimension, interfaces, AS and ToS too): a year of totals on a small disk"),
    "storage.max_bytes": Setting(ranged(parse_size, 0, 1 << 50, " bytes"), 0, "size cap of the SQLite file's used pages; past it the oldest partitions' flows are dropped (logged, counted), rollups kept; 0 = no cap, retention alone"),
    "storage.write_queue_batches": Setting(ranged(_int, 1, 65536), 64, "SQLite write queue, in full 4096-flow batches (rows = this x 4096, however the batches arrive); beyond it the store sheds load (counted)"),
    "storage.write_max_rows": Setting(ranged(_int, 1, 10_000_000), 50_000, "rows per SQLite transaction at most"),
    "storage.advisory_retention": Setting(_pos_duration, 30 * 86400.0, "how long resolved advisories are kept"),
    "storage.ifcounter_retention": Setting(_pos_duration, 30 * 86400.0, "how long the per-minute sFlow interface counter rows (the ifcounters op, the interface page's switch counters) are kept"),
    "storage.ifcounter_max_rows": Setting(ranged(_int, 1, 100_000_000), 2_000_000, "per-minute interface counter rows kept in all (about 100 bytes each in SQLite; 2,000,000 is 46 interfaces for 30 days); past it the oldest are deleted"),
    "storage.bus_xsub_bind": Setting(_endpoint, "tcp://127.0.0.1:5559", "where the store's bus forwarder accepts publishers"),
    "storage.bus_xpub_bind": Setting(_endpoint, "tcp://127.0.0.1:5560", "where the store's bus forwarder accepts subscribers"),
    "storage.events_bind": Setting(_endpoint, "tcp://127.0.0.1:5561", "where the store takes advisories (the events socket, bus.events_endpoint) and confirms each one it wrote"),
    "storage.query_bind": Setting(_endpoint, "tcp://127.0.0.1:5555", "where the store answers queries"),
    "storage.query_max_rows": Setting(ranged(_int, 1, 1_000_000), 10_000, "most flows one query reply carries"),
    "storage.query_workers": Setting(ranged(_int, 1, 64), 2, "threads answering flows/top/series/advisories queries, each with its own SQLite reader"),
    "storage.query_rollup_cache": Setting(ranged(parse_size, 0, 1 << 30, " bytes"), 4 << 20, "decoded rollups each query worker keeps for the next query (small ones only; 0: none)"),
    "storage.query_top_cache": Setting(ranged(parse_size, 0, 1 << 30, " bytes"), 16 << 20, "per-key totals of sealed rollups merged for a top, shared by the query workers, so a top over the same window (a dashboard refresh) is not merged again (0: none)"),
    "storage.query_hot_cache": Setting(ranged(parse_size, 0, 1 << 30, " bytes"), 8 << 20, "sums of the hours not yet rolled up (the hour filling now), grouped from their sealed blocks for the dashboard's tops and charts and kept per hour and question, shared by the query workers, so a refresh merges only the blocks written since instead of reading the hour again; about 1.5 MB a top of 65,000 destinations (0: none)"),
    "storage.query_warm_ranges": Setting(_warm_ranges, ["24h", "72h"], "dashboard ranges (ending now) whose tops the store merges into storage.query_top_cache in the background, at start and when an hour is sealed, so a first view is a cache hit; at the lowest priority, paused while users' queries run; empty: none"),
    "storage.query_queue": Setting(ranged(_int, 1, 100_000), 32, "queries waiting for a worker at most; beyond it a query gets a 'busy' error reply"),
    "storage.query_time_limit": Setting(ranged(_pos_duration, 0.01, 3600, " s"), 4.0, "longest one SQLite read may run before it is cut off with an error reply"),
    "storage.sqlite_cache": Setting(ranged(parse_size, 64 << 10, 64 << 30, " bytes"), 8 << 20, "page cache of the SQLite writer connection (appends touch few pages)"),

    "analysis.interval": Setting(_pos_duration, 60.0, "how often the analyzers run (flow time)"),
    "analysis.window": Setting(_pos_duration, 60.0, "sliding window the analyzers look at"),
    "analysis.watermark": Setting(_duration, 30.0, "how late a flow may arrive and still count in its window"),
    "analysis.clock_tolerance": Setting(_pos_duration, 60.0, "how far an exporter's flow times may run ahead of the analyzer's clock (later ones are refused, counted per exporter) or behind the newest exporter's (it stops holding the flow clock back)"),
    "analysis.max_window_flows": Setting(ranged(_int, 1, 100_000_000), 600_000, "flows the analyzer keeps in its windows (60 bytes each, 92 while IPv6 flows are among them; with the working memory of a run, about 120 bytes per flow at its peak); the oldest-arrived are dropped (counted)"),
    "analysis.resolve_after": Setting(_pos_duration, 300.0, "an advisory resolves when its condition has been absent this long"),
    "analysis.local_networks": Setting(_networks, ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"], "networks that are ours (inside)"),
    "analysis.top_talkers_count": Setting(ranged(_int, 1, 10_000), 10, "hosts listed by the top-talker analysis"),
    "analysis.top_talker_share": Setting(_fraction, 0.5, "share of total bytes that makes a host a top-talker advisory"),
    "analysis.anomaly_baseline_window": Setting(_pos_duration, 7 * 86400.0, "history the anomaly baseline looks back over"),
    "analysis.anomaly_prefix_v4": Setting(_prefix_v4, 24, "IPv4 destination prefix length for anomaly detection"),
    "analysis.anomaly_prefix_v6": Setting(_prefix_v6, 64, "IPv6 destination prefix length for anomaly detection"),
    "analysis.anomaly_spike_factor": Setting(ranged(_float, 1.01), 5.0, "traffic this many times the baseline is a spike"),
    "analysis.anomaly_drop_fraction": Setting(_fraction, 0.9, "traffic this far below the baseline is a drop"),
    "analysis.anomaly_min_bytes": Setting(ranged(_int, 0, 10**15), 1_000_000, "baseline bytes per window below which a prefix is too small to judge"),
    "analysis.scan_threshold": Setting(ranged(_int, 2, 65536), 100, "unique ports of one host per 60 s that make a vertical scan (the seed says 500, which misses nmap -F's 100 ports and the 300-port nmap captures in tests/data; DNS and other replies are told apart, so 100 raises no alarm on their normal traffic)"),
    "analysis.sweep_threshold": Setting(ranged(_int, 2, 1 << 32), 50, "hosts on one port per 60 s that make a horizontal sweep"),
    "analysis.dns_qps_threshold": Setting(ranged(_float, 0.001), 100.0, "DNS queries per second from one source that raise an advisory"),
    "analysis.dns_response_bytes": Setting(ranged(_int, 1, 10**15), 10_000_000, "DNS bytes leaving the network per window that suggest reflection"),
    "analysis.asymmetry_dominant_share": Setting(_fraction, 0.8, "share of a prefix's outbound (and of its return) bytes one exporter must carry before the two paths are compared"),
    "analysis.asymmetry_min_flows": Setting(_positive_int, 20, "flows per direction a prefix needs in the window before asymmetry is judged"),
    "analysis.exporter_silence": Setting(_pos_duration, 120.0, "an exporter silent this long is reported as stopped"),
    "analysis.dns_ports": Setting(lambda v: [str(_port(p)) for p in _str_list(v)], ["53", "853"], "ports counted as DNS (UDP and TCP; 853 = DNS over TLS)"),
    "analysis.update_change": Setting(_fraction, 0.25, "relative change of an advisory's figures that publishes an update"),
    "analysis.update_every": Setting(_pos_duration, 300.0, "an advisory that persists unchanged is re-published this often (keeps last_seen current)"),
    "analysis.idle_after": Setting(_pos_duration, 5.0, "with no flows for this long (wall clock), flow time advances with the wall clock"),
    "analysis.anomaly_history_minutes": Setting(ranged(_int, 1, 7 * 1440), 60, "per-minute history kept in memory per prefix/exporter for the short-term baseline"),
    "analysis.anomaly_min_history": Setting(ranged(_int, 1, 7 * 1440), 10, "minutes of history needed before a prefix/exporter is judged"),
    "analysis.anomaly_max_keys": Setting(ranged(_int, 1, 10_000_000), 2000, "prefixes plus exporters the anomaly baseline tracks; the smallest are replaced"),
    "analysis.health_interval": Setting(_pos_duration, 10.0, "how often the analyzer publishes its own health event and checks exporter health"),
    "analysis.instance_id": Setting(_str, "", "source id on the bus; empty = analyzer@host:pid"),

    "web.listen": Setting(_listen, "0.0.0.0:8080", "host:port of the web UI"),
    "web.store_connections": Setting(ranged(_int, 1, 16), 2, "queries the web runs on the store at once (match storage.query_workers): one for the dashboard and other ring answers, the rest for history pages (at least one each)"),
    "web.metrics_max_exporters": Setting(ranged(_int, 1, 1_000_000), 100, "exporters (per observation domain) with series of their own on /metrics, the most flows first; the rest are summed in one exporter=\"other\" series"),
    "web.page_size": Setting(ranged(_int, 1, 10_000), 50, "flows per page in the flow explorer"),
    "web.csv_max_rows": Setting(ranged(_int, 1, 10_000_000), 100_000, "rows a CSV download of a whole flow list holds at most; a longer list is cut there and the file's last line says so (its name gives the limit too)"),
    "web.refresh": Setting(ranged(_int, 0, 86400, " s"), 30, "dashboard auto-refresh in seconds (meta refresh); 0 disables"),
    "web.users_file": Setting(_file_path, "", "accounts file (name:role:scrypt hash, written by `flowlens users add`); empty = no accounts, every page open (the web warns when it listens beyond loopback so)"),
    "web.session_lifetime": Setting(ranged(_pos_duration, 60, 366 * 86400, " s"), 12 * 3600.0, "how long a login lasts; a new password or a removed account ends its sessions at once"),
    "web.session_secret_file": Setting(_file_path, "", "file holding the key that signs session cookies (any bytes, at least 32); empty = a random key per start, so a restart logs everyone out"),
    "web.login_max_failures": Setting(ranged(_int, 1, 1000), 5, "failed logins from one client address in 5 minutes before its next tries get 429 until that window passes"),
    "web.metrics_token": Setting(_str, "", "bearer token /metrics requires (Authorization: Bearer ...); empty = /metrics open"),
    "web.tls_cert": Setting(_file_path, "", "PEM certificate (chain) to serve HTTPS directly; with web.tls_key; empty = plain HTTP (or TLS at a reverse proxy)"),
    "web.tls_key": Setting(_file_path, "", "PEM private key of web.tls_cert"),
    "web.heavy_queries_per_client": Setting(ranged(_int, 1, 1000), 2, "history queries (flow explorer, about) one client address runs or waits for at once; more get 429 with Retry-After"),
    "web.max_connections": Setting(ranged(_int, 16, 1_000_000), 1000, "open HTTP connections at most (capped below the open-file limit); past it the oldest connection still sending its request is closed to make room"),
    "web.header_timeout": Setting(ranged(_pos_duration, 0.1, 3600, " s"), 10.0, "a connection that has not sent a whole request head this long after it opened (or after its last answer) is closed"),
    "web.body_timeout": Setting(ranged(_pos_duration, 0.1, 3600, " s"), 30.0, "a request whose body has not arrived this long after its head is closed"),
    "web.keep_alive_timeout": Setting(ranged(_pos_duration, 0.1, 3600, " s"), 5.0, "an idle keep-alive connection is closed after this long"),
    "web.access_log": Setting(_bool, False, "one log line per request (method, path, status, ms, client), within web.log_lines_per_minute"),
    "web.log_lines_per_minute": Setting(ranged(_int, 1, 1_000_000), 60, "lines one kind of web log message writes per minute at most; the rest are counted and said in one line"),
    "web.public_url": Setting(_public_url, "", "the address people open the web UI at (https://flowlens.example.net), for the links to an advisory's flows in notifications; empty = no links"),

    "report.utc_offset": Setting(_report_offset, "+00:00", "the daily report's day runs midnight to midnight at this offset from UTC (+01:00, -05:30; whole quarter hours; a fixed offset: summer time is not followed)"),
    "report.top_n": Setting(ranged(_int, 1, 50), 10, "rows in each of the daily report's top lists (sources, destinations, ports, protocols)"),
    "report.advisories_max": Setting(ranged(_int, 1, 10_000), 1000, "advisories the daily report reads for its day at most (the counts say when there were more)"),
    "report.email_to": Setting(_emails, [], "addresses the notifier emails the daily report to every morning (through report.target); empty = no email, the /report page only"),
    "report.send_at": Setting(_report_send_at, "06:00", "when (HH:MM at report.utc_offset) the notifier emails the report of the day before; once per day, remembered in notify.state_path across restarts"),
    "report.target": Setting(_str, "", "the email target of notify.targets whose SMTP server (and from address) sends the daily report; empty = the first email target"),

    # a top-level list (TOP_LEVEL_KEYS), not a section: `exporters:` in the YAML file
    "exporters": Setting(_exporters, [], "exporters by address (a top-level list): name, site and static interface names and speeds per ifIndex, e.g. [{address: 192.0.2.1, name: edge-1, site: paris, interfaces: {1: {name: Gi0/1, description: uplink, speed: 10G}}}]; the store shows them (source config, below options data and SNMP)"),
    "names.reverse_dns": Setting(_bool, False, "look exporters' addresses up in reverse DNS (in the store's background thread, never while a query waits) and show the name beside the address"),
    "names.dns_cache": Setting(ranged(_int, 1, 1_000_000), 4096, "reverse DNS answers the store keeps (oldest forgotten first)"),
    "names.dns_ttl": Setting(ranged(_pos_duration, 1, 30 * 86400, " s"), 3600.0, "how long a reverse DNS answer (or a failed lookup) is kept before it is asked again"),
    "names.max_interfaces": Setting(ranged(_int, 1, 4096), 4096, "interfaces kept per exporter and source (the collector's table from options data; the store's rows); past it new ifIndexes are dropped (counted)"),
    "names.max_rows": Setting(ranged(_int, 1, 10_000_000), 100_000, "interface rows the store keeps over all exporters and sources (about 200 bytes each, in memory and in SQLite); past it the least recently learnt are dropped"),
    "names.republish_interval": Setting(ranged(_pos_duration, 1, 86400, " s"), 300.0, "a collector publishes the interface names it learnt from options data when they change and again this often (a store that missed them catches up)"),

    "enrichment.geoip_asn": Setting(_file_path, "", "MaxMind-format database (.mmdb: GeoLite2-ASN, GeoIP2-ISP) the collector fills src_as/dst_as from where the exporter left them 0; empty = off; a missing or unreadable file stops the collector"),
    "enrichment.geoip_country": Setting(_file_path, "", "MaxMind-format database (.mmdb: GeoLite2/GeoIP2 Country or City) the collector fills src_country/dst_country from; private, CGNAT, loopback, link-local, documentation, multicast and reserved addresses get that label instead; empty = off"),
    "enrichment.max_ranges": Setting(ranged(_int, 1000, 50_000_000), 2_000_000, "address ranges the collector reads from one database at most (6-12 bytes each in memory: GeoLite2-ASN needs about 1 M, Country less); a larger database stops the collector with a message naming this key"),

    "notify.targets": Setting(_notify_targets, [], "where notifications go: a list of maps with a unique name and a type: webhook (url, format json or text, headers), email (host, port, starttls, ssl, username, password, from, to) or syslog (host, port, protocol udp or tcp, facility, app_name); empty = no notifier (flowlens up starts it when one is set)"),
    "notify.rules": Setting(_notify_rules, [], "which advisories go to which targets: a list of maps with targets (names) and matches that must all hold: severity (one: it or more severe; or a list), analyzer, subject (patterns like 10.0.5.*), network (CIDR the subject lies in); an advisory goes to the targets of every rule it matches; empty = every advisory to every target"),
    "notify.state_path": Setting(_required_file_path, "data/notifier.json", "file where the notifier keeps its place in the store's advisories and the notifications not yet delivered, so a restart loses and repeats none"),
    "notify.poll_interval": Setting(ranged(_pos_duration, 0.05, 60, " s"), 1.0, "how often the notifier asks the store for advisories received since its last look"),
    "notify.group_wait": Setting(ranged(_duration, 0, 3600, " s"), 2.0, "how long a first notification waits for related ones, so a burst goes out as one message"),
    "notify.group_interval": Setting(ranged(_pos_duration, 0.1, 86400, " s"), 60.0, "one message per target per this interval at most: notifications arriving sooner wait and go together in the next one"),
    "notify.max_items": Setting(ranged(_int, 1, 10_000), 50, "advisories one message tells in full; the rest are counted in one line (all of them in the webhook's JSON)"),
    "notify.queue_max": Setting(ranged(_int, 1, 10_000_000), 10_000, "notifications waiting per target (about 1 KiB each, kept in notify.state_path); past it the oldest are dropped and counted"),
    "notify.send_timeout": Setting(ranged(_pos_duration, 0.1, 600, " s"), 10.0, "how long one delivery (HTTP POST, SMTP session, syslog send) may take before it counts as failed"),
    "notify.retry_max_backoff": Setting(ranged(_pos_duration, 0.1, 86400, " s"), 300.0, "a failed message is tried again after 1 s, 2 s, 4 s, ... up to this"),
    "notify.retry_for": Setting(ranged(_pos_duration, 1, 30 * 86400, " s"), 6 * 3600.0, "a message not delivered this long after its first try is dropped (counted)"),
    "notify.failing_after": Setting(ranged(_int, 1, 1000), 3, "failed tries in a row after which a target raises a WARNING advisory of its own (resolved by its next delivery)"),
    "notify.tracked_max": Setting(ranged(_int, 100, 10_000_000), 100_000, "open advisories the notifier remembers (what it told about each); past it the oldest is forgotten (counted) and notified again if it changes"),

    "snmp.targets": Setting(_snmp_targets, [], "SNMP agents the poller walks for interface names (IF-MIB ifName, ifAlias, ifHighSpeed): a list of maps, one per exporter: exporter (the address its flows come from), host (where its agent answers; default the exporter), port (161), version (2c or 3), then community (v2c) or user, auth_protocol (none, md5, sha, sha224, sha256, sha384, sha512), auth_key, priv_protocol (none, des, 3des, aes, aes192, aes256), priv_key, context (v3); empty = no poller (flowlens up starts it when one is set)"),
    "snmp.interval": Setting(ranged(_pos_duration, 60, 30 * 86400, " s"), 3600.0, "how often each agent is walked again (it is walked once at start)"),
    "snmp.retry_interval": Setting(ranged(_pos_duration, 1, 86400, " s"), 300.0, "an agent whose walk failed is tried again this soon, not a whole snmp.interval later"),
    "snmp.timeout": Setting(ranged(_pos_duration, 0.1, 60, " s"), 2.0, "how long one SNMP request waits for its answer"),
    "snmp.retries": Setting(ranged(_int, 0, 10), 1, "times a request that timed out is sent again before the walk counts as failed"),
    "snmp.max_interfaces": Setting(ranged(_int, 1, 4096), 4096, "interfaces kept per agent, the lowest ifIndexes (at most 4096, one event's worth); the walk stops there and counts the rest as cut"),
    "snmp.concurrency": Setting(ranged(_int, 1, 256), 8, "agents walked at once"),
    "snmp.failing_after": Setting(ranged(_int, 1, 1000), 2, "failed walks in a row after which a target raises a WARNING advisory of its own (resolved by its next good walk)"),
}

SECTIONS = tuple(sorted({k.split(".", 1)[0] for k in SETTINGS}))
TOP_LEVEL_KEYS = tuple(k for k in SETTINGS if "." not in k)  # keys that are a whole top-level entry (a list)



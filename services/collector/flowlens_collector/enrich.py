"""AS numbers and countries of a decoded batch's addresses, from the MaxMind-format databases the
user points to (enrichment.geoip_asn, enrichment.geoip_country; empty = off).

``Enricher`` is inert until ``open()``, which reads each database into a geotable.RangeTable (a
missing, unreadable or wrong database is a ConfigError naming its key). ``apply`` then fills a
batch column-wise: src_as / dst_as where the exporter left them 0, and src_country / dst_country,
where addresses of special ranges get their label (flowmodel.geo.address_labels) rather than a
country.
"""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import numpy as np

from flowmodel.config import ConfigError
from flowmodel.logs import fields
from flowmodel.geo import COUNTRY_DTYPE, address_labels, pack_country
from flowmodel.schema import FLOW_COLUMNS, FlowBatch

if TYPE_CHECKING:
    from . import geotable

log = logging.getLogger(__name__)

AS_DTYPE = FLOW_COLUMNS["src_as"][0]


def asn_of(record: dict) -> int:
    """A GeoLite2-ASN / GeoIP2-ISP record's AS number (0: none)."""
    value = record.get("autonomous_system_number")
    return value if isinstance(value, int) and 0 < value < 1 << 32 else 0


def country_of(record: dict) -> int:
    """A GeoIP2/GeoLite2 Country or City record's packed country: where the address is, else
    where its block is registered (anycast and satellite blocks have only that)."""
    for key in ("country", "registered_country"):
        part = record.get(key)
        code = part.get("iso_code") if isinstance(part, dict) else None
        if isinstance(code, str) and len(code) == 2 and code.isascii() and code.isalpha():
            return pack_country(code)
    return 0


class Enricher:
    def __init__(self, asn_path: str = "", country_path: str = "", max_ranges: int = 2_000_000):
        self.asn_path = asn_path
        self.country_path = country_path
        self.max_ranges = max_ranges
        self.asn: geotable.RangeTable | None = None
        self.country: geotable.RangeTable | None = None
        self.counters = {"enriched_flows": 0, "as_filled": 0, "country_found": 0}

    @classmethod
    def from_config(cls, cfg) -> "Enricher":
        return cls(cfg["enrichment.geoip_asn"], cfg["enrichment.geoip_country"], cfg["enrichment.max_ranges"])

    @property
    def enabled(self) -> bool:
        return self.asn is not None or self.country is not None

    def open(self) -> None:
        """Read the configured databases. Raises ConfigError naming the key of a bad one."""
        if self.asn_path:
            self.asn = self._table("enrichment.geoip_asn", self.asn_path, asn_of, AS_DTYPE, "AS numbers")
        if self.country_path:
            self.country = self._table("enrichment.geoip_country", self.country_path, country_of,
                                       COUNTRY_DTYPE, "countries")

    def _table(self, key: str, path: str, value_of, dtype, what: str) -> geotable.RangeTable:
        import maxminddb  # only a collector with a database configured needs these
        from maxminddb.errors import InvalidDatabaseError

        from . import geotable

        if not os.path.isfile(path):
            raise ConfigError(f"{key}: {path!r} is not a file (a MaxMind-format .mmdb database)")
        try:
            reader = maxminddb.open_database(path)
        except (OSError, ValueError, InvalidDatabaseError) as e:
            raise ConfigError(f"{key}: cannot read {path!r} as a MaxMind-format database: {e}") from e
        kind = reader.metadata().database_type
        try:
            table = geotable.build(reader, path, value_of, dtype, self.max_ranges)
        except geotable.TooManyRanges as e:
            reader.close()
            raise ConfigError(f"{key}: {path!r} has {e}; raise enrichment.max_ranges to read it") from e
        except (InvalidDatabaseError, ValueError, TypeError, OSError) as e:  # a damaged tree or data section
            reader.close()
            raise ConfigError(f"{key}: cannot read {path!r} as a MaxMind-format database: {e}") from e
        if not table.valued_networks:
            reader.close()
            raise ConfigError(f"{key}: {path!r} ({kind}) holds no {what}")
        if table.fallback is None:
            reader.close()  # everything is in the table
        log.info("enrichment database read", extra=fields(key=key, path=path, database_type=kind, ranges=table.ranges))
        return table

    def apply(self, batch: FlowBatch) -> None:
        """Fill the batch's AS and country columns in place (new arrays; their hints dropped)."""
        cols = batch.columns
        for side in ("src", "dst"):
            addrs = cols[f"{side}_addr"]
            if self.asn is not None:
                name = f"{side}_as"
                exported = cols[name]
                found = self.asn.lookup(addrs)
                filled = np.where(exported == 0, found, exported).astype(AS_DTYPE, copy=False)
                self.counters["as_filled"] += int(np.count_nonzero(filled != exported))
                cols[name] = filled
                batch.hints.pop(name, None)
            if self.country is not None:
                name = f"{side}_country"
                labels = address_labels(addrs)
                codes = np.where(labels != 0, labels, self.country.lookup(addrs)).astype(COUNTRY_DTYPE, copy=False)
                self.counters["country_found"] += int(np.count_nonzero(codes))
                cols[name] = codes
                batch.hints.pop(name, None)
        self.counters["enriched_flows"] += batch.count

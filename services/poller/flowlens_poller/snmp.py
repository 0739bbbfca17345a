"""The SNMP I/O, a thin shell around pysnmp (the lextudio 7.x line, asyncio): one target's
credentials as pysnmp's auth data, and a column-parallel GETBULK walk of IF-MIB driven by
ifmib.TableWalk. Every failure comes out as ``PollError`` with the reason in words (no answer,
wrong credentials, an agent's error status), never as pysnmp's own types.
"""
from __future__ import annotations

import ipaddress

from pysnmp.hlapi.v3arch.asyncio import (CommunityData, ContextData, SnmpEngine, Udp6TransportTarget,
                                         UdpTransportTarget, UsmUserData, bulk_cmd)
from pysnmp.hlapi.v3arch.asyncio import auth as usm
from pysnmp.error import PySnmpError
from pysnmp.proto.error import StatusInformation
from pysnmp.proto.rfc1902 import Null, ObjectName
from pysnmp.proto.rfc1905 import EndOfMibView, NoSuchInstance, NoSuchObject

from .ifmib import COLUMNS, TableWalk, Value

REPETITIONS = 10    # rows per column in one GETBULK: 5 columns x 10 fit well under a 1500-byte response

AUTH = {"none": usm.USM_AUTH_NONE, "md5": usm.USM_AUTH_HMAC96_MD5, "sha": usm.USM_AUTH_HMAC96_SHA,
        "sha224": usm.USM_AUTH_HMAC128_SHA224, "sha256": usm.USM_AUTH_HMAC192_SHA256,
        "sha384": usm.USM_AUTH_HMAC256_SHA384, "sha512": usm.USM_AUTH_HMAC384_SHA512}
PRIV = {"none": usm.USM_PRIV_NONE, "des": usm.USM_PRIV_CBC56_DES, "3des": usm.USM_PRIV_CBC168_3DES,
        "aes": usm.USM_PRIV_CFB128_AES, "aes192": usm.USM_PRIV_CFB192_AES, "aes256": usm.USM_PRIV_CFB256_AES}
_EXCEPTIONS = (NoSuchObject, NoSuchInstance, EndOfMibView)


class PollError(Exception):
    """A walk that failed; the message says why in words."""


def auth_data(target: dict):
    """A target of snmp.targets (flowmodel.snmpconf) as pysnmp's CommunityData or UsmUserData."""
    if target["version"] == "2c":
        return CommunityData(target["community"], mpModel=1)
    return UsmUserData(target["user"], authKey=target["auth_key"] or None, privKey=target["priv_key"] or None,
                       authProtocol=AUTH[target["auth_protocol"]], privProtocol=PRIV[target["priv_protocol"]])


async def transport(target: dict, timeout_s: float, retries: int):
    """The UDP transport to the target's agent (IPv6 when its host is an IPv6 address); a host name
    that does not resolve is a PollError."""
    try:
        is_v6 = ipaddress.ip_address(target["host"]).version == 6
    except ValueError:
        is_v6 = False  # a name: pysnmp resolves it (IPv4)
    kind = Udp6TransportTarget if is_v6 else UdpTransportTarget
    try:
        return await kind.create((target["host"], target["port"]), timeout=timeout_s, retries=retries)
    except Exception as e:  # pysnmp wraps resolver errors in its PySnmpError
        raise PollError(f"cannot resolve {target['host']}: {e}") from e


def _value(value) -> Value:
    if isinstance(value, _EXCEPTIONS):
        return None
    if hasattr(value, "asOctets"):
        return bytes(value.asOctets())
    try:
        return int(value)
    except (TypeError, ValueError):
        return None  # a type IF-MIB does not put in these columns (an OID, an address)


async def walk_ifmib(engine: SnmpEngine, target: dict, timeout_s: float, retries: int, max_rows: int,
                     repetitions: int = REPETITIONS) -> TableWalk:
    """Walk ifName, ifAlias, ifHighSpeed, ifDescr and ifSpeed of one agent, each up to ``max_rows``
    rows. Each request moves at least one column on by one row or ends it, so a walk takes at most
    5 x (max_rows + 1) requests; each waits ``timeout_s``, ``retries`` times more when unanswered."""
    walk = TableWalk(dict(COLUMNS), max_rows)
    credentials = auth_data(target)
    to = await transport(target, timeout_s, retries)
    context = ContextData(contextName=target.get("context", ""))
    for _request in range(len(COLUMNS) * (max_rows + 1)):
        if walk.done:
            break
        asked = walk.next_oids()
        try:
            error, status, index, varbinds = await bulk_cmd(
                engine, credentials, to, context, 0, repetitions,
                *[(ObjectName(oid), Null("")) for _name, oid in asked], lookupMib=False)
        except StatusInformation as e:  # raised, not returned, for some v3 failures (no cipher, bad keys)
            raise PollError(f"{target['host']}:{target['port']}: {e.get('errorIndication', e)}") from e
        except PySnmpError as e:
            raise PollError(f"{target['host']}:{target['port']}: {e}") from e
        if error:
            raise PollError(f"{target['host']}:{target['port']}: {error}")
        if status:
            raise PollError(f"{target['host']}:{target['port']}: the agent answered {status.prettyPrint()} "
                            f"(at varbind {int(index)})")
        walk.absorb([name for name, _oid in asked], [(tuple(oid), _value(value)) for oid, value in varbinds])
    return walk

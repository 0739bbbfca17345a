"""Advisories name a flow's service as the pages and `flowlens query` name its protocol."""
from flowlens_analyzer.ports import service_name
from flowmodel.protocol import protocol_name


def test_a_protocol_without_ports_is_named_as_the_pages_name_it():
    # a VRRP flow (protocol 112) was "mostly protocol 112" in the advisory and "VRRP" on every page
    assert service_name(0, 112) == protocol_name(112) == "VRRP"
    assert service_name(0, 47) == "GRE" and service_name(0, 89) == "OSPF"
    assert service_name(0, 4) == "protocol 4"  # no name anywhere: the number, said so
    assert service_name(443, 6) == "HTTPS" and service_name(31337, 6) == "port 31337/TCP"

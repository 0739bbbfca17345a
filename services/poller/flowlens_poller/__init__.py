"""FlowLens SNMP poller: interface names and speeds from the exporters' IF-MIB, published on the bus."""

"""FlowLens shared library: the flow schema, bus codec and envelope, config, query protocol and client."""
__version__ = "0.1.0"

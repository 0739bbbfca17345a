"""FlowLens store: bus forwarder, hot ring, SQLite warm tier, and the query protocol."""
__version__ = "0.1.0"

"""FlowLens web UI: server-rendered XHTML pages (no JavaScript) over the store's query protocol."""
__version__ = "0.1.0"

"""FlowLens analyzer: flow-time windows, analyzers, advisory lifecycle, bus service."""

"""FlowLens collector: receives NetFlow v5/v9/IPFIX over UDP and publishes flow batches on the bus."""

"""FlowLens benchmarks (`make bench`): each module's ``run(report)`` adds rows to one table.

Numbers are measured here and printed, never asserted in tests. All traffic stays on loopback,
bounded in count and time.
"""

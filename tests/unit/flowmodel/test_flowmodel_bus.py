"""Bus socket limits: flow-carrying sockets are bounded in bytes, not only in messages."""
from flowmodel import bus
from flowmodel.schema import FLOW_COLUMNS
def test_flow_socket_queue_limit_is_bounded_in_bytes():
    from flowmodel.config import load_config

    def limit(**over):
        return bus.queue_limit(load_config(None, env={}, overrides=over))

    assert bus.WIRE_BYTES_PER_FLOW == sum(dt.itemsize for dt, _d in FLOW_COLUMNS.values())
    per_batch = 16384 * bus.WIRE_BYTES_PER_FLOW + 1024
    assert limit() == (32 << 20) // per_batch == 14                    # default: 32 MiB of 16384-flow batches
    assert limit(**{"bus.queue_bytes": "16MiB"}) == 7
    assert limit(**{"collector.batch_max_flows": 512}) == (32 << 20) // (512 * bus.WIRE_BYTES_PER_FLOW + 1024)
    assert limit(**{"bus.queue_bytes": "1KiB"}) == bus.MIN_QUEUE_MESSAGES  # never so small that one burst drops
    assert limit(**{"bus.high_water_mark": 10}) == 10                  # the message cap still applies

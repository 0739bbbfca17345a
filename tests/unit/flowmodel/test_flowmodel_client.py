"""A request msgpack cannot write (an int past 64 bits, an object) is a StoreError in words before
anything is sent, not an OverflowError or TypeError traceback in the script that asked."""
import pytest

from flowmodel.client import StoreClient, StoreError


@pytest.mark.parametrize("args", [{"limit": 10 ** 30}, {"step": -(2 ** 70)}, {"src": object()}])
def test_an_argument_msgpack_cannot_write_is_refused_before_sending(args):
    client = StoreClient("tcp://127.0.0.1:9", timeout_s=0.2, retries=0)  # nothing listens: nothing may be sent
    try:
        with pytest.raises(StoreError, match=r"^flows: an argument cannot be sent to the store"):
            client.request("flows", **args)
    finally:
        client.close()

from flowlens_analyzer import asymmetry
from flowlens_analyzer.common import Context, view_from_batch
from flowmodel.schema import FlowBatch

from flows import T0, batch, config, normal_mix


def run(b, **cfg):
    return asymmetry.analyze(view_from_batch(b, T0, T0 + 60_000), Context(config(**cfg)), {})


def test_out_via_one_exporter_back_via_another():
    inside = [f"10.1.0.{i}" for i in range(1, 41)]
    out = batch(inside, "203.0.113.5", 443, exporter="192.0.2.1", output_if=3, bytes=2000)
    back = batch("203.0.113.5", inside, 50000, src_port=443, exporter="192.0.2.2", input_if=7, bytes=9000)
    [f] = run(FlowBatch.concat([out, back]))
    assert f.key == "asymmetry:10.1.0.0/24"
    assert f.severity == "WARNING"
    assert f.description.startswith("Traffic from 10.1.0.0/24 exits via exporter 192.0.2.1 interface 3 (100% of 80.0 kB) "
                                    "but returns via exporter 192.0.2.2 interface 7 (100% of 360.0 kB)")
    assert "routing tables" in f.action
    assert f.filter["addr"] == "10.1.0.0/24"


def test_symmetric_paths_raise_nothing():
    inside = [f"10.1.0.{i}" for i in range(1, 41)]
    a = FlowBatch.concat([batch(inside, "203.0.113.5", 443, exporter="192.0.2.1"),
                          batch("203.0.113.5", inside, 50000, src_port=443, exporter="192.0.2.1"),
                          batch("10.2.0.1", "203.0.113.5", 443, exporter="192.0.2.2", n=30)])
    assert run(a) == []


def test_normal_mix_raises_nothing():
    assert run(normal_mix()) == []


def test_thresholds_come_from_config():
    inside = [f"10.1.0.{i}" for i in range(1, 41)]
    out = batch(inside, "203.0.113.5", 443, exporter="192.0.2.1", bytes=2000)
    # 30 of the 40 return flows via the other gateway, 10 via the same: 75% on the return path
    back = FlowBatch.concat([batch("203.0.113.5", inside[:30], 50000, src_port=443, exporter="192.0.2.2", bytes=9000),
                             batch("203.0.113.5", inside[30:], 50000, src_port=443, exporter="192.0.2.1", bytes=9000)])
    both = FlowBatch.concat([out, back])
    assert run(both) == []                                    # default: 80% needed on each path
    [f] = run(both, asymmetry_dominant_share=0.7)
    assert f.key == "asymmetry:10.1.0.0/24" and "(75% of 360.0 kB)" in f.description
    assert run(both, asymmetry_dominant_share=0.7, asymmetry_min_flows=41) == []

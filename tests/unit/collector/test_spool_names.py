"""Files in the spool directory and journals whose names only look numeric: str.isdigit() takes
'²', which int() refuses, so such a name crashed the collector's start instead of being ignored."""
from flowlens_collector import seqmarks
from flowlens_collector.outbox import Outbox


def test_a_spool_file_named_with_other_digits_is_ignored(tmp_path):
    (tmp_path / "\u00b2\u00b3.spool").write_bytes(b"not ours")
    box = Outbox(str(tmp_path), 1 << 20, 1 << 20)
    box.open()
    try:
        assert box.flows == 0 and box.spool_bytes == 0 and box.spool_errors == 0
    finally:
        box.close()
    assert (tmp_path / "\u00b2\u00b3.spool").exists()  # not ours to delete


def test_a_journal_named_with_other_digits_is_ignored(tmp_path):
    stem = str(tmp_path / "sequences")
    (tmp_path / "sequences.\u00b2.journal").write_text("{}\n")
    (tmp_path / "sequences.7.journal").write_text("")
    assert seqmarks._journals(stem) == [(7, stem + ".7.journal")]

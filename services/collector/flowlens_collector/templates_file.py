"""Restart state: the decoder's template state as a JSON file and, beside it, what each exporter's
sequence numbering expects next; both written atomically (temp file in the same directory, fsync,
rename) so a crash never leaves half a file behind."""
from __future__ import annotations

import json
import logging
import os
import tempfile

from flowmodel.logs import fields

log = logging.getLogger(__name__)


def save_state(path: str, state: dict) -> None:
    save_text(path, json.dumps(state, separators=(",", ":")))


def save_text(path: str, text: str) -> None:
    """Write the state's JSON text atomically (the collector builds it cheaply, see
    TemplatedDecoder.state_text; this part may run on a thread: file I/O releases the GIL)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + "-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


SEQUENCE_FORMAT = 1


def sequences_path(template_path: str) -> str:
    """Where the sequence state lives: beside the templates file ('templates.json' ->
    'templates.sequences.json')."""
    stem, ext = os.path.splitext(template_path)
    return stem + ".sequences" + (ext or ".json")


def sequences_text(streams: list, saved_ms: int) -> str:
    """The sequence file's JSON text of Decoder.sequence_state entries."""
    return json.dumps({"format": SEQUENCE_FORMAT, "saved_ms": saved_ms, "streams": streams}, separators=(",", ":"))


def load_sequences(path: str) -> list:
    """The saved streams (Decoder.sequence_state entries), [] when there is no usable file."""
    state = load_state(path)
    if state is None:
        return []
    streams = state.get("streams")
    if state.get("format") != SEQUENCE_FORMAT or not isinstance(streams, list):
        log.warning("sequence file of an unknown format; ignored", extra=fields(path=path))
        return []
    return streams


def load_state(path: str) -> dict | None:
    """The saved state, or None when there is none; an unreadable file is logged and ignored
    (templates come back with the exporters' next refresh)."""
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warning("template file unreadable; starting without saved templates",
                    extra=fields(path=path, error=str(e)))
        return None
    if not isinstance(state, dict):
        log.warning("template file does not hold a mapping; ignored", extra=fields(path=path))
        return None
    return state

"""The notifier's state file (notify.state_path): its place in the store's advisories, what it told
about each open one, and every notification not yet delivered, written whole to a temporary file,
flushed to disk and renamed over the old one, so a crash leaves either the old state or the new."""
from __future__ import annotations

import json
import os

VERSION = 1


class StateError(RuntimeError):
    """The state file exists but cannot be read; the message says which file and why."""


def load(path: str) -> dict | None:
    """The saved state, or None when there is none yet."""
    if not path or not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError) as e:
        raise StateError(f"cannot read the notifier state {path}: {e}; move it away to start afresh "
                         "(open advisories are then told again)") from e
    if not isinstance(state, dict) or state.get("version") != VERSION:
        raise StateError(f"the notifier state {path} is not version {VERSION} of this notifier's state")
    return state


def save(path: str, state: dict) -> int:
    """Write ``state`` atomically; returns its size in bytes."""
    data = json.dumps({**state, "version": VERSION}, separators=(",", ":"), default=str).encode()
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(data)

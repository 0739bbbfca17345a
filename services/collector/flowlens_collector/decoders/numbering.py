"""IPFIX sequence numbering per transport session: which numbering an exporter uses, and the
sequence number each message hands to the loss accounting.

IPFIX counts all data records before this message (RFC 7011). softflowd counts them including this
message and leaves its options records out. Which numbering a stream uses is guessed from its first
message (seq == its own records: inclusive) and confirmed or corrected by the first two consecutive
messages whose steps fit one numbering only (record counts that differ, such as a template refresh
without data): a stream first seen mid-way (a collector restart) starts from the guess "all" and is
switched without counting a loss. A confirmed numbering is kept with the templates. Modes: "all"
(RFC), "inclusive" (seq includes the message's records), "inclusive_flows" (its flow records,
options records not counted).
"""
from __future__ import annotations

import numpy as np

MODES = ("all", "inclusive", "inclusive_flows")


class IpfixNumbering:
    """Per session [mode, confirmed, previous sequence or None, its records, its flow records];
    ``acct`` (collector Accounting) tracks the sequence numbers. ``generation`` changes whenever
    what is saved with the templates (a session's mode or its confirmation) changes."""

    def __init__(self, acct, max_sessions: int):
        self.acct = acct
        self.max_sessions = max_sessions  # past it the table starts again
        self.modes: dict[tuple, list] = {}
        self.generation = 0

    def mode(self, session: tuple) -> str | None:
        """The numbering used for ``session`` ("all", "inclusive", ...), None if none yet."""
        info = self.modes.get(session)
        return info[0] if info else None

    def known(self, session: tuple) -> list | None:
        """The session's state when the sequence of its last message is known (runs need it)."""
        info = self.modes.get(session)
        return info if info is not None and info[2] is not None else None

    def observe(self, session: tuple, seq: int, records: int, flow_records: int, st) -> None:
        """One message of ``records`` data records (``flow_records`` of them flows) numbered ``seq``."""
        info = self.modes.get(session)
        if info is None:
            if len(self.modes) >= self.max_sessions:
                self.modes.clear()
            if records > 0 and seq == records:
                mode = "inclusive"
            elif flow_records > 0 and seq == flow_records:
                mode = "inclusive_flows"
            else:
                mode = "all"
            info = self.modes[session] = [mode, False, None, 0, 0]
        elif info[2] is not None and (not info[1] or (info[0] != "all" and records != flow_records)):
            # unconfirmed, or an inclusive numbering meeting options records (which tell the two apart)
            pseq, prec = info[2], info[3]
            fits = [m for m, expected in (("all", pseq + prec), ("inclusive", pseq + records),
                                          ("inclusive_flows", pseq + flow_records))
                    if seq == expected & 0xFFFFFFFF]
            if fits and info[0] not in fits:
                self._switch(session, info, fits[0], st)
                self.generation += 1
            if not info[1] and fits and (fits == ["all"] or "all" not in fits):
                info[1] = True  # RFC or inclusive numbering: only a loss or a reset can tell otherwise now
                self.generation += 1
        mode = info[0]
        if mode == "inclusive":
            self.acct.sequence(session, (seq - records) & 0xFFFFFFFF, records, st)
        elif mode == "inclusive_flows":
            self.acct.sequence(session, (seq - flow_records) & 0xFFFFFFFF, flow_records, st)
        else:
            self.acct.sequence(session, seq, records, st)
        info[2], info[3], info[4] = seq, records, flow_records

    def _switch(self, session, info, mode, st) -> None:
        """The guessed numbering did not fit: forget what the tracker expects and replay the
        previous message under the new numbering (a stream's first message counts nothing)."""
        info[0] = mode
        self.acct.forget_sequence(session)
        pseq, prec, pflow = info[2], info[3], info[4]
        if mode == "inclusive":
            self.acct.sequence(session, (pseq - prec) & 0xFFFFFFFF, prec, st)
        elif mode == "inclusive_flows":
            self.acct.sequence(session, (pseq - pflow) & 0xFFFFFFFF, pflow, st)
        else:
            self.acct.sequence(session, pseq, prec, st)

    def run_mode(self, session, info, seqs: np.ndarray, counts: np.ndarray, now_ms: int) -> str:
        """The numbering for a run of single-data-set messages (records = flow records = counts),
        confirming or correcting an unconfirmed guess from the run's steps; remembers its last one."""
        if not info[1]:
            p_seq = np.concatenate(([info[2]], seqs[:-1]))
            p_rec = np.concatenate(([info[3]], counts[:-1]))
            fit_all = seqs == (p_seq + p_rec) & 0xFFFFFFFF
            fit_inc = seqs == (p_seq + counts) & 0xFFFFFFFF
            only_all, only_inc = bool((fit_all & ~fit_inc).any()), bool((fit_inc & ~fit_all).any())
            if only_all != only_inc:
                mode = "all" if only_all else (info[0] if info[0] != "all" else "inclusive")
                if mode != info[0]:
                    self._switch(session, info, mode, self.acct.stats(session[0], session[3], now_ms))
                info[1] = True
                self.generation += 1
        info[2], info[3], info[4] = int(seqs[-1]), int(counts[-1]), int(counts[-1])
        return info[0]

    def unknown(self, session: tuple) -> None:
        """A message whose record count is unknown (sets held for their template): the next one
        starts the count afresh."""
        self.acct.forget_sequence(session)
        info = self.modes.get(session)
        if info is not None:
            info[2] = None

    def forget(self, session: tuple) -> None:
        self.modes.pop(session, None)

    def confirmed(self) -> list[tuple]:
        return [k for k, v in self.modes.items() if v[1]]

    def saved(self, session: tuple) -> tuple[str | None, bool]:
        """(mode, confirmed) as the templates file keeps them."""
        info = self.modes.get(session)
        return (info[0], bool(info[1])) if info else (None, False)

    def restore(self, session: tuple, mode: str, confirmed: bool) -> None:
        if mode not in MODES or session[2] != 10:
            raise ValueError("ipfix sequence mode")
        self.modes[session] = [mode, bool(confirmed), None, 0, 0]

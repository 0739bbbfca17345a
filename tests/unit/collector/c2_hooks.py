"""Whether the templated decoder calls Template.account (the hook C2's enterprise/NSEL counting needs in
templated._materialise, owned by C1). Tests that need it skip with this reason until it is wired."""
from __future__ import annotations

import inspect

from flowlens_collector.decoders import templated

ACCOUNT_WIRED = ".account(" in inspect.getsource(templated)
ACCOUNT_REASON = ("templated._materialise does not call Template.account yet (the 6-line change is in "
                  "C2's report for C1); Template.account itself is tested directly")

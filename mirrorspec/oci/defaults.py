"""The run's `--timeout` default and what is measured in it, in a module that imports nothing:
the CLI reads them to build its options, for `--help` too, which must not pay for `requests`."""

from __future__ import annotations

__all__ = ["BODY_TIMEOUTS", "DEFAULT_TIMEOUT", "HOST_BUDGET_TIMEOUTS"]

DEFAULT_TIMEOUT = 30.0
# A body (tag list, manifest, token, an API answer) must arrive within this many timeouts
# (5 minutes by default): 8 MiB in that time is ~220 kbit/s.
BODY_TIMEOUTS = 10
# A host that answered nothing useful for this many timeouts (2 minutes by default) is given
# up for the run. Three attempts of one request that time out (3 × timeout) fit inside it.
HOST_BUDGET_TIMEOUTS = 4

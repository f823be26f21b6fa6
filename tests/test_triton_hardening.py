"""tests/test_hardening.py on the Triton kernels (TRITON_INTERPRET=1: the triton stage of
tests/run.sh): NaN/inf, empty terms, rsgan at infinity, penalties, neg-bit views, autocast."""
from __future__ import annotations

from test_hardening import *  # noqa: F401,F403  (BACKENDS is ["triton"] in this process)

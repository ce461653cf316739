"""Fixtures shared by every test module."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def fresh_derivation_cache(tmp_path_factory):
    """Each test module gets an empty disk cache of derivations (the verifier's,
    derive/dcache.py), in the environment so that subprocesses inherit it: no
    test reads or writes the user's ~/.cache/lstm-derive, and none depends on
    what another module left there."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LSTM_DERIVE_CACHE", str(tmp_path_factory.mktemp("derivations")))
    yield
    mp.undo()

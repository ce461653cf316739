"""The derivations the verifier judges against, derived once per process.

Contract. ``load(name_or_path, loss=None)`` returns the :class:`Derivation`
that ``derive.derive`` returns for the same arguments, computing only the one
asked for, once per process (keyed by the spec's label and text and the loss
option, so an edited spec file is derived again).

Nothing is stored on disk. Earlier versions kept pickles in
``~/.cache/lstm-derive``; unpickling is code execution for whoever can write
the folder (a shared ``$LSTM_DERIVE_CACHE``, a symlink swapped between a check
and the ``open``), and an entry renamed over another made one cell judged as
another. A derivation takes 0.03 to 0.2 s, so a verdict from the shell derives
its cell afresh; ``$LSTM_DERIVE_CACHE`` is no longer read, and files an older
version left there are never opened.
"""

from __future__ import annotations

import hashlib


def key(label: str, text: str, loss: str | None) -> str:
    """What a derivation depends on, as a digest of the spec's label and text and the loss."""
    h = hashlib.sha256()
    h.update(label.encode("utf-8", "surrogateescape"))
    h.update(b"\0" + text.encode("utf-8", "surrogateescape"))
    h.update(b"\0" + str(loss).encode())
    return h.hexdigest()


def load(name_or_path, loss: str | None = None):
    """The derivation of a preset or spec file, derived once per process."""
    from derive.derivation import derive, spec_text

    label, text = spec_text(name_or_path)
    k = key(label, text, loss)
    hit = _MEMORY.get(k)
    if hit is None:
        hit = _MEMORY[k] = derive(name_or_path, loss=loss)
    return hit


# one process derives each cell once
_MEMORY: dict[str, object] = {}

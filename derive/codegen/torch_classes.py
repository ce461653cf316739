"""The torch-style classes of the torch presets' modules: LSTM, GRU, RNN.

Contract. :func:`class_context` gives ``templates/numpy_torch_classes.py.j2``
what differs between torch.nn.LSTM, torch.nn.GRU and torch.nn.RNN: the class
name, the gates stacked in a weight, the states (h; h and c), the option the
module adds (proj_size, nonlinearity) and the variants, other derived cells
whose one-layer functions the class uses for an option (``VARIANTS``: the
sibling module's file in generated/, read when the option asks for it, and
called through its sequence functions with torch's stacked weights cut into
the notation's parameters). The
class composes layers, directions and per-sequence lengths from the
one-layer functions; it holds no recurrence of its own.
"""

from __future__ import annotations

import pprint

from derive.derivation import derive, presets

CLASS_NAME = {"pytorch": "LSTM", "gru": "GRU", "elman": "RNN"}
OPTION = {"pytorch": ("proj_size", ", proj_size=0"), "elman": ("nonlinearity", ', nonlinearity="tanh"')}

# preset -> [(the option's condition on self, the sibling preset whose derived step serves it)]
VARIANTS: dict[str, list[tuple[str, str]]] = {
    "pytorch": [("self.proj_size", "lstm_proj")],
    "elman": [('self.nonlinearity == "relu"', "elman_relu")],
}
UNSUPPORTED = {"lstm_proj": "LSTM(proj_size>0)", "elman_relu": "RNN(nonlinearity='relu')"}


def _variant(condition: str, sibling: str, torch_prefix: dict[str, str]) -> tuple[tuple, dict]:
    """The class's branch for an option a sibling preset derives, and what the
    module must know of that preset to call its (generic) sequence functions:
    its stacks (torch's weight names -> the notation's), the gradient names."""
    d = derive(sibling)
    cell = d.cell
    (x,) = cell.names("input")
    table = {
        "module": sibling,
        "prefix": torch_prefix.get(sibling, "lstm" if len(cell.links) == 2 else "rnn"),  # as api.api_prefix
        "torch_api": sibling in torch_prefix,  # its functions take torch's stacked weights already
        "stacks": {k: tuple(v) for k, v in cell.stacks.items()},
        "grads": {m: d.gradient_name(m) for v in cell.stacks.values() for m in v},
        "dx": d.gradient_name(x),
        "dstates": tuple(d.gradient_name(l.prev) for l in cell.links),
    }
    return (condition, [f"return _variant_step({sibling!r})"]), table


def _unsupported(condition: str, what: str) -> tuple:
    return condition, [f"raise NotImplementedError({what!r})"]


def class_context(preset: str, prefix: str, module: str, gates: int, finals: list[str], initial: list[str],
                  torch_prefix: dict[str, str]) -> dict:
    """The class template's variables for one torch preset (none for a variant
    preset); ``torch_prefix``: the presets whose modules have torch's API, and
    their functions' prefix."""
    if preset not in CLASS_NAME:
        return {"class_name": None}
    option, signature = OPTION.get(preset, ("", ""))
    variants, tables = [], {}
    for condition, sibling in VARIANTS.get(preset, []):
        if sibling in presets():
            branch, tables[sibling] = _variant(condition, sibling, torch_prefix)
            variants.append(branch)
        else:
            variants.append(_unsupported(condition, f"{UNSUPPORTED[sibling]}: this build has no derived "
                                                    f"{sibling} cell"))
    keys = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    return {
        "class_name": CLASS_NAME[preset],
        "module": module,
        "prefix": prefix,
        "gates": gates,
        "finals": finals,
        "finals_text": finals[0] if len(finals) == 1 else "(" + ", ".join(finals) + ")",
        "option": option,
        "option_signature": signature,
        "variants": variants,
        "siblings": tables,
        "siblings_text": pprint.pformat(tables, width=100, sort_dicts=False).replace("\n", "\n" + " " * 12),
        "key_examples": ", ".join(keys + (["weight_hr_l0"] if option == "proj_size" else [])),
        "key_note": "; weight_hr_* with proj_size > 0" if option == "proj_size" else "",
        "hx_text": "(h_0, c_0), each (num_layers * directions, N, features)" if len(finals) > 1
        else "h_0, (num_layers * directions, N, hidden_size)",
        "initial_names": repr(tuple(initial)),
        "initial_names_list": initial,
        "initial_keys_text": " and ".join(f'"{k}"' for k in initial),
        "final_names": repr(tuple("grad_" + f for f in finals)),
    }

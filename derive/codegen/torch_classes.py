"""The torch-style classes of the torch presets' modules: LSTM, GRU, RNN.

Contract. :func:`class_context` gives ``templates/numpy_torch_classes.py.j2``
what differs between torch.nn.LSTM, torch.nn.GRU and torch.nn.RNN: the class
name, the gates stacked in a weight, the states (h; h and c), the option the
module adds (proj_size, nonlinearity) and the variants, other derived cells
whose one-layer functions the class uses for an option (``VARIANTS``: the
sibling module's file in generated/, read when the option asks for it). The
class composes layers, directions and per-sequence lengths from the
one-layer functions; it holds no recurrence of its own.
"""

from __future__ import annotations

CLASS_NAME = {"pytorch": "LSTM", "gru": "GRU", "elman": "RNN"}
OPTION = {"pytorch": ("proj_size", ", proj_size=0"), "elman": ("nonlinearity", ', nonlinearity="tanh"')}

# preset -> [(condition on self, sibling preset, names of its step functions, its parameter names)]
VARIANTS: dict[str, list[tuple[str, str, tuple[str, str], tuple[str, ...]]]] = {}


def _variant_code(condition: str, sibling: str, functions: tuple[str, str], params: tuple[str, ...]) -> tuple:
    return condition, [
        f"sibling = _sibling({sibling!r})",
        f"return sibling.{functions[0]}, sibling.{functions[1]}, {params!r}",
    ]


def _unsupported(condition: str, what: str) -> tuple:
    return condition, [f"raise NotImplementedError({what!r})"]


def class_context(preset: str, prefix: str, module: str, gates: int, finals: list[str], initial: list[str]) -> dict:
    """The class template's variables for one torch preset."""
    option, signature = OPTION.get(preset, ("", ""))
    variants = [_variant_code(*v) for v in VARIANTS.get(preset, [])]
    if preset == "elman" and not any("relu" in c for c, _ in variants):
        variants.append(_unsupported('self.nonlinearity == "relu"',
                                     "RNN(nonlinearity='relu'): no derived relu step in this build"))
    if preset == "pytorch" and not any("proj" in c for c, _ in variants):
        variants.append(_unsupported("self.proj_size", "LSTM(proj_size>0): no derived projection step in this build"))
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
        "siblings": bool(VARIANTS.get(preset)),
        "key_examples": ", ".join(keys + (["weight_hr_l0"] if option == "proj_size" else [])),
        "key_note": "; weight_hr_* with proj_size > 0" if option == "proj_size" else "",
        "hx_text": "(h_0, c_0), each (num_layers * directions, N, features)" if len(finals) > 1
        else "h_0, (num_layers * directions, N, hidden_size)",
        "initial_names": repr(tuple(initial)),
        "initial_names_list": initial,
        "initial_keys_text": " and ".join(f'"{k}"' for k in initial),
        "final_names": repr(tuple("grad_" + f for f in finals)),
    }

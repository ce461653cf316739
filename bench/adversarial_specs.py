"""Specs built to be slow, at the caps (50 equations, 300 symbols): chains using
the previous equations, wide sums and products, nested activations. Writes them
to FOLDER; time each with `lstm-derive numpy SPEC` or `derive.derive(SPEC)`
(BENCHMARKS.md, "Re-run with CPU times").

    python bench/adversarial_specs.py FOLDER
"""
import sys
from pathlib import Path
OUT = Path(sys.argv[1])
OUT.mkdir(parents=True, exist_ok=True)

HEAD = '''name = "adv"
title = "adversarial"
source = "hostile2"
layout = "rows"
batch = "N"
'''
TAIL = '''
[[recurrent]]
out = "h"
prev = "h_prev"
grad = "dh"

[loss]
kind = "upstream"
on = "h"
external = "doutput"
'''
def spec(eqs, symbols, dims=("n", "N")):
    s = HEAD + "\nforward = [\n" + "".join(f'  {{ eq = "{e}" }},\n' for e in eqs) + "]\n\n[dims]\n"
    s += "".join(f'{d} = "a size"\n' for d in dims)
    s += "\n[symbols]\n" + "".join(f"{k} = {v}\n" for k, v in symbols.items())
    return s + TAIL

def base_symbols(params=()):
    sy = {"x": '{ role = "input", shape = ["N", "n"] }', "h_prev": '{ role = "state", shape = ["N", "n"] }'}
    for p in params:
        sy[p] = '{ role = "param", shape = ["n", "n"] }'
    return sy

def write(name, text):
    (OUT / f"{name}.toml").write_text(text)
    print(name, len(text.encode()))

# 1. 50 chained equations, each using the previous two
eqs = ["a0 = tanh(x @ W0 + h_prev @ U0)", "a1 = sigmoid(a0 @ W1 + x)"]
for k in range(2, 49):
    eqs.append(f"a{k} = tanh(a{k-1} @ W{k%5} + a{k-2} * sigmoid(a{k-1}))")
eqs.append("h = a48 * a47 + h_prev")
sy = base_symbols([f"W{i}" for i in range(5)] + ["U0"])
for k in range(49): sy[f"a{k}"] = "{ }"
sy["h"] = "{ }"
write("chain50", spec(eqs, sy))

# 2. chained, each using ALL previous (wide sums)
eqs = ["a0 = tanh(x @ W0 + h_prev)"]
for k in range(1, 49):
    eqs.append(f"a{k} = tanh(" + " + ".join(f"a{j}" for j in range(k)) + ")")
eqs.append("h = " + " * ".join(f"a{j}" for j in range(0, 49, 6)) + " + h_prev")
sy = base_symbols(["W0"])
for k in range(49): sy[f"a{k}"] = "{ }"
sy["h"] = "{ }"
write("chain50_all_prev", spec(eqs, sy))

# 3. products of everything before
eqs = ["a0 = sigmoid(x @ W0 + h_prev)"]
for k in range(1, 49):
    eqs.append(f"a{k} = " + " * ".join(f"a{j}" for j in range(max(0, k-8), k)) + f" + a{k-1}")
eqs.append("h = a48 + h_prev")
write("chain50_products", spec(eqs, sy))

# 4. 300 symbols: many params, one equation sum of param products
params = [f"W{i}" for i in range(296)]
sy = base_symbols(params)
sy["h"] = "{ }"
terms = [f"h_prev @ W{i}" for i in range(296)]
eq = "h = tanh(" + " + ".join(terms[:99]) + ")"
eqs = [eq] + []
write("symbols300_wide", spec([eq], {k: v for k, v in list(sy.items())[:299]}))

# 5. 300 symbols spread over 50 equations
sy = base_symbols([f"W{i}" for i in range(240)])
eqs = []
for k in range(49):
    ws = [f"W{(k*5+j)%240}" for j in range(5)]
    prev = f"a{k-1}" if k else "h_prev"
    eqs.append(f"a{k} = tanh(" + " + ".join(f"{prev} @ {w}" for w in ws) + ")")
    sy[f"a{k}"] = "{ }"
eqs.append("h = a48 + h_prev"); sy["h"] = "{ }"
write("symbols300_eq50", spec(eqs, sy))

# 6. deep nesting inside equations
eqs = ["h = " + "tanh(" * 45 + "x @ W0 + h_prev" + ")" * 45]
write("deep_tanh", spec(eqs, dict(base_symbols(["W0"]), h="{ }")))
eqs = ["h = " + "sigmoid(h_prev * " * 45 + "x" + ")" * 45]
write("deep_sigmoid_products", spec(eqs, dict(base_symbols(), h="{ }")))
eqs = ["h = " + "exp(log(h_prev + " * 22 + "x" + "))" * 22]
write("deep_exp_log", spec(eqs, dict(base_symbols(), h="{ }")))
# 7. 50 equations each deep
sy = dict(base_symbols(["W0"]))
eqs = []
for k in range(49):
    prev = f"a{k-1}" if k else "h_prev"
    eqs.append(f"a{k} = " + "tanh(" * 20 + f"{prev} @ W0 + x" + ")" * 20); sy[f"a{k}"] = "{ }"
eqs.append("h = a48"); sy["h"] = "{ }"
write("chain50_deep20", spec(eqs, sy))
# 8. chain where each uses the previous twice in a multiplication (expression doubling)
sy = dict(base_symbols(["W0"]))
eqs = ["a0 = tanh(x @ W0 + h_prev)"]
for k in range(1, 49):
    eqs.append(f"a{k} = a{k-1} * a{k-1} + sigmoid(a{k-1})"); 
for k in range(49): sy[f"a{k}"] = "{ }"
eqs.append("h = a48"); sy["h"] = "{ }"
write("chain50_doubling", spec(eqs, sy))
# 9. big shapes
sy = {"x": '{ role = "input", shape = ["N", "n*n*n+n"] }', "h_prev": '{ role = "state", shape = ["N", "4096"] }',
      "W0": '{ role = "param", shape = ["n*n*n+n", "4096"] }', "h": "{ }"}
write("big_shapes", spec(["h = tanh(x @ W0 + h_prev)"], sy))
# 10. many activations mixed
acts = ["tanh", "sigmoid", "exp", "log", "relu", "softplus", "abs", "sqrt"]
sy = dict(base_symbols(["W0"]))
eqs = ["a0 = tanh(x @ W0 + h_prev)"]
for k in range(1, 49):
    f, g = acts[k % 8], acts[(k*3) % 8]
    eqs.append(f"a{k} = {f}(a{k-1}) * {g}(a{k-1} + a{max(0,k-2)}) + maximum(a{k-1}, a{max(0,k-3)})")
for k in range(49): sy[f"a{k}"] = "{ }"
eqs.append("h = a48 + h_prev"); sy["h"] = "{ }"
write("chain50_activations", spec(eqs, sy))

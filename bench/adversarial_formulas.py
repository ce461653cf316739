"""Formulas built to be slow (deep nesting to the limit, long sums and products,
many powers, nested \\frac, slices, random activation trees), each verified
against coursera `dft` in this process with its CPU and wall time printed
(BENCHMARKS.md, "Re-run with CPU times"). Arguments: substrings of the case
names to run only those.

    python bench/adversarial_formulas.py [NAME ...]
"""
import sys, time, random
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from derive.errors import DeriveError
from derive.verifier.formula import verify
verify("coursera","dft","ft",syntax="python")
N=10_000
def sumlim(items, sep=" + ", k=99):
    out=[]
    for it in items:
        if len(out) >= k or len(sep.join(out+[it])) > N: break
        out.append(it)
    return sep.join(out)
R=random.Random(3)
names=["ft","it","cct","ot","c_prev","dc","da","a_prev"]
cases={}
cases["py 99 terms of 10-factor products"] = sumlim(["*".join(R.choice(names) for _ in range(10)) for _ in range(200)])
cases["py 99 terms tanh(sum)*sig"] = sumlim([f"tanh({R.choice(names)}+{R.choice(names)}*{R.choice(names)})*sigmoid({R.choice(names)}-{R.choice(names)})*{R.choice(names)}" for _ in range(200)])
cases["py 99 terms of (a+b)**16"] = sumlim([f"({R.choice(names)}+{R.choice(names)}+{R.choice(names)})**16" for _ in range(200)])
cases["py 99 products (a+b) 99"] = sumlim([f"({R.choice(names)}+{R.choice(names)})" for _ in range(200)], sep="*")
cases["py nested log 99"] = "log("*99 + "ft" + ")"*99
cases["py nested log sums 49"] = "log(ft+"*49 + "it" + ")"*49
cases["py nested tanh sums 49"] = "tanh(ft*"*49 + "it" + ")"*49
cases["py nested exp sums 49"] = "exp(ft+"*49 + "it" + ")"*49
cases["py nested sqrt sums 49"] = "sqrt(ft+"*49 + "it" + ")"*49
cases["py nested abs 99"] = "abs("*99 + "ft" + ")"*99
cases["py nested softplus 99"] = "softplus("*99 + "ft" + ")"*99
cases["py nested relu 99"] = "relu("*99 + "ft" + ")"*99
cases["py nested max 49"] = "maximum(ft,"*49 + "it" + ")"*49
cases["py nested max both 6"] = None
def mx(d): return "ft" if d==0 else f"maximum({mx(d-1)},{mx(d-1)}+it)"
cases["py nested max both 6"] = mx(6)
def mixed(d):
    if d==0: return R.choice(names)
    f=R.choice(["tanh","sigmoid","exp","log","sqrt","abs"])
    return f"{f}({mixed(d-1)}*{R.choice(names)}+{mixed(d-1)})"
cases["py mixed tree 8"] = mixed(8)[:N]
cases["py mixed tree 9"] = mixed(9)
MT9=cases["py mixed tree 9"]
cases["py nested divisions 99"] = "1/(ft+"*99 + "it" + ")"*99
cases["py nested powers of sums 6 16"] = "("*6 + "ft+it" + ")**16+ft"*6
cases["py nested rational powers"] = "("*8 + "ft+it" + ")**0.5+ft"*8
cases["py fractions 99"] = sumlim([f"{R.randint(1,10**30)}/{R.randint(1,10**30)}*{R.choice(names)}" for _ in range(200)])
cases["py floats 99"] = sumlim([f"{R.uniform(-1e300,1e300)!r}*{R.choice(names)}" for _ in range(200)])
cases["py many distinct names"] = sumlim([f"x{i}" for i in range(200)])
cases["py indexing deep"] = "ft" + "[0:2]"*99
cases["py concat nested"] = "concat("*49 + "ft,it" + ")"*49
cases["py sum_t nest"] = "sum_t(" + sumlim(["ft*dc*"+R.choice(names) for _ in range(200)]) + ")"
L=[r"\Gamma_f", r"\Gamma_u", r"c^{\langle t-1 \rangle}", r"\tilde{c}^{\langle t \rangle}", r"\Gamma_o", r"a^{\langle t-1 \rangle}"]
def lsum(items, sep=" + ", k=99): return sumlim(items, sep, k)
cases["tex 99 terms 10-factor"] = lsum([r" \odot ".join(R.choice(L) for _ in range(10)) for _ in range(200)])
cases["tex nested frac 99"] = r"\frac{"*99 + r"\Gamma_f" + "}{2}"*99
cases["tex nested frac sums 49"] = r"\frac{\Gamma_f+"*49 + r"\Gamma_u" + r"}{\Gamma_u+1}"*49
cases["tex nested tanh 49"] = r"\tanh\left("*49 + r"\Gamma_f" + r"\right)"*49
cases["tex nested log 49"] = r"\log\left("*49 + r"\Gamma_f" + r"\right)"*49
cases["tex nested sqrt 99"] = r"\sqrt{"*99 + r"\Gamma_f" + "}"*99
cases["tex nested exp sums 49"] = r"\exp\left(\Gamma_f+"*49 + r"\Gamma_u" + r"\right)"*49
cases["tex pow sums 99"] = lsum([r"\left(\Gamma_f+\Gamma_u+\Gamma_o\right)^{16}" for _ in range(200)], sep=" ")
def ltree(d):
    if d==0: return R.choice(L)
    return r"\tanh\left(" + ltree(d-1) + r" \odot " + R.choice(L) + " + " + ltree(d-1) + r"\right)"
cases["tex tanh tree 7"] = ltree(7)[:N]
only = sys.argv[1:] 
for k, txt in cases.items():
    if only and not any(o in k for o in only): continue
    syn = "latex" if k.startswith("tex") else "python"
    c=time.process_time(); w=time.perf_counter()
    try:
        r = verify("coursera", "dft", txt, syntax=syn); out = "ok " + str(r.ok) + " " + r.message[:70].replace("\n"," ")
    except DeriveError as e:
        out = "refused: " + str(e)[:100].replace("\n"," ")
    except Exception as e:
        out = "UNEXPECTED " + type(e).__name__ + str(e)[:100]
    c=time.process_time()-c; w=time.perf_counter()-w
    print(f"{c:7.3f} {w:7.3f} {k:32s} {len(txt):6d} {out}", flush=True)

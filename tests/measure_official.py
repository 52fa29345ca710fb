"""Max |diff| of every comparison in tests/test_official.py: runs its test functions and
records what they compare (book/appendix/official_code.md quotes the result).

    PYTHONPATH=. python tests/measure_official.py
"""
import sys, inspect, collections
sys.path.insert(0, 'tests')
import torch
import test_official as T
rec = collections.defaultdict(lambda: [0.0, 0.0])
cur = [None]
orig = T.compare
def compare(model, a, b):
    d, g = orig(model, a, b)
    r = rec[cur[0]]; r[0] = max(r[0], d); r[1] = max(r[1], g)
    return d, g
T.compare = compare
class MP:
    def __init__(self): self.saved = []
    def setattr(self, obj, name, val):
        self.saved.append((obj, name, getattr(obj, name))); setattr(obj, name, val)
    def undo(self):
        for obj, name, val in reversed(self.saved): setattr(obj, name, val)
        self.saved = []
def run(fn, name, params):
    cur[0] = name
    for p in params:
        mp = MP()
        try: fn(mp, *p)
        finally: mp.undo()
run(T.test_mopoe_official_preset_equals_the_official_code, "MOPOE", [(2,9,False),(3,62,True),(5,62,False),(5,93,True),(4,40,False)])
run(T.test_mvae_official_preset_equals_the_official_code, "MVAE", [(2,8,False),(3,31,True),(5,20,False)])
run(T.test_mmvae_official_preset_equals_shi_et_al, "MMVAE", [(2,30,6,False),(3,4,31,True),(2,1,62,False)])
run(T.test_dreg_both_gradients_and_both_bounds, "DREG", [(g,h,b,m,k,bb) for g,h in (("intended","codes"),("released","copy")) for b in ("looser","tight") for m,k,bb in ((2,5,7),(3,3,31))])
run(T.test_mmvae_iwae_bounds_equal_shi_et_al, "IWAE", [("looser",),("tight",)])
run(T.test_mmvae_m_elbo_equals_shi_et_al, "MELBO", [(2,9),(3,31)])
for k, (d, g) in rec.items(): print(f"{k}: value {d:.1e}  grad {g:.1e}")

"""Training: one epoch of each stage, resume after a kill, the dvclive log, validation on held-out ids, the
collectives of several processes (distributed.py) and the torchrun launcher (launch.py, apart: it runs before
torch is imported)."""

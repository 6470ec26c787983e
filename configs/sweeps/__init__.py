"""Sweep configs (``python sweep.py --sweep=configs/sweeps/NAME.py``) and their shared recipes."""

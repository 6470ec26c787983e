import os
import sys

# Tests import the repository's `fire` package (not the unrelated python-fire).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

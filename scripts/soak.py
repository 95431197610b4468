"""Leak soak: a million emits and 10^5 registration changes, nothing leaks.

    python scripts/soak.py                 # 10^6 emits, 10^5 churn, both cores
    python scripts/soak.py --emits 100000 --churn 10000 --impl compiled

The workload lives in tests/soak_workload.py (tests/test_soak.py runs it,
smaller, in the normal suite); this runs it with the same options.
"""

import os
import runpy
import sys

TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")

if __name__ == "__main__":
    sys.path[0] = TESTS  # the workload imports the tests' support module
    sys.argv[0] = os.path.join(TESTS, "soak_workload.py")
    runpy.run_path(sys.argv[0], run_name="__main__")

"""Run tools/tune.py in a child process on the tiny dataset (a worker of the shared-study test).

Usage: python -m tests.apps.tune_subprocess IMAGE_DIR -- <tune args>
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tools"))

import tune  # noqa: E402

from tests.engine.train_subprocess import tiny_child_args  # noqa: E402

if __name__ == "__main__":
    tune.main(tiny_child_args(sys.argv[1:]))

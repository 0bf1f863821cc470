"""Child process of the evaluation-output kill test: ``tools/eval.py`` files mode in a loop.

Usage: python -m tests.reliability.eval_output_child GT DT OUT PAUSE_ON

Before each atomic rename it prints ``WRITING <basename> <run>``; when the file is PAUSE_ON in
run 2 or later it sleeps there, so the parent can SIGKILL it with the new bytes written to the
temporary file but not yet renamed (the worst instant).
"""
import os
import sys
import time
import types

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

import cxr_runtime.fileio  # noqa: E402  (cxr.fileio's writers live here)
from cxr.apps.evaluate import evaluate_files  # noqa: E402

if __name__ == "__main__":
    gt, dt, out, pause_on = sys.argv[1:]
    run = [0]
    real_replace = os.replace

    def replace(src, dst):
        name = os.path.basename(dst)
        print(f"WRITING {name} {run[0]}", flush=True)
        if name == pause_on and run[0] >= 2:
            time.sleep(60)
        real_replace(src, dst)

    # the atomic writers see os with only `replace` swapped.
    shim = types.SimpleNamespace(**{k: getattr(os, k) for k in dir(os) if not k.startswith("__")})
    shim.replace = replace
    cxr_runtime.fileio.os = shim
    while True:
        run[0] += 1
        evaluate_files(gt, dt, out, plots=False, tensorboard=False, bootstrap=0)
        print(f"DONE {run[0]}", flush=True)

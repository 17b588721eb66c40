"""Run a command and report its exit code and peak RSS: ``python launch.py RESULT_FILE CMD...``.

A child's peak RSS (``ru_maxrss`` from wait4) starts from its parent's RSS at the fork, so measured
from inside pytest (hundreds of MiB once torch is imported) every child looks large. This small
process is the parent instead; it writes "EXIT_CODE PEAK_KIB" to RESULT_FILE.
"""

import os
import subprocess
import sys

proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as result:
    result.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}\n")

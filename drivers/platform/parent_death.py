"""Python child processes that die with the thread that starts them, whenever it dies.

The kernel's parent-death signal (Linux `prctl(PR_SET_PDEATHSIG)`) has it kill a process
when the thread that forked it ends: a `kill -9` of the parent, a crash or an exit takes
its children along. It must be set by the child itself, so `python_child` puts it before
anything else the child runs, ahead of the imports and of any read that could block; the
parent may die before that, in which case the child sees another parent (`getppid()`) and
kills itself. Whenever the parent dies, a child started this way never runs on.

The signal is SIGKILL: a child blocked in C code (a camera read from a pipe, say) never runs
a Python SIGTERM handler, so SIGTERM could leave it running; a graceful stop is the
parent's to ask for while it lives.

It is the *thread* that counts: a child dies when the thread that started it ends, even if
the process lives on. Start children from a thread that lives as long as they should.
"""

from __future__ import annotations

import os
import signal
import sys

DEATH_SIGNAL = signal.SIGKILL
_PR_SET_PDEATHSIG = 1  # linux/prctl.h

# The child's first lines: nothing of ours is imported before the signal is set.
_PRELUDE = """\
import ctypes, os
if ctypes.CDLL(None, use_errno=True).prctl({option}, {signal}, 0, 0, 0) != 0:
    raise SystemExit("cannot set the parent-death signal: " + os.strerror(ctypes.get_errno()))
if os.getppid() != {parent}:
    os.kill(os.getpid(), {signal})
"""


def python_child(entry: str) -> list[str]:
    """The command line of a Python child that runs `entry` ("package.module:function",
    called without arguments) with this process's `sys.path`, and dies with the thread
    that starts it (`subprocess.Popen` it from that thread)."""
    module, _, function = entry.partition(":")
    if not module or not function.isidentifier():
        raise ValueError(f"entry {entry!r} is not 'package.module:function'")
    prelude = _PRELUDE.format(option=_PR_SET_PDEATHSIG, signal=int(DEATH_SIGNAL),
                              parent=os.getpid())
    program = (f"{prelude}import sys\nsys.path[:] = {sys.path!r}\n"
               f"from {module} import {function}\n{function}()\n")
    return [sys.executable, "-c", program]

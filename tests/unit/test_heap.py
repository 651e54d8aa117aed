"""shared.heap: start-up garbage is collected, what is alive is frozen out of later sweeps.

Run in a child interpreter: freezing is process-wide and would reach every later test.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import gc, weakref
    from shared.heap import freeze_startup_heap

    class Node:
        pass

    garbage = Node()
    garbage.self = garbage  # a cycle only the collector can free
    dead = weakref.ref(garbage)
    del garbage
    alive = [[1], [2]]  # tracked, still referenced
    assert any(o is alive for o in gc.get_objects())

    frozen = freeze_startup_heap()

    assert dead() is None, "the start-up garbage cycle was not collected"
    assert frozen == gc.get_freeze_count() > 0
    assert not any(o is alive for o in gc.get_objects()), "a live object is still swept"
    later = [[3]]
    assert any(o is later for o in gc.get_objects()), "objects made after are swept as usual"
    again = freeze_startup_heap()  # a second call freezes what came since, nothing lost
    assert again >= frozen
    import atexit
    atexit._run_exitfuncs()  # what the interpreter runs at exit: everything handed back
    assert gc.get_freeze_count() == 0, "frozen objects would outlive the last collection"
    print("ok", frozen)
    """
)


def test_freeze_collects_startup_garbage_takes_the_rest_out_of_sweeps_until_exit() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok ")

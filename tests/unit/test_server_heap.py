"""The serving process's frozen start-up heap (``server.settle_heap``, issue 11): what was alive at start-up is out
of the collector's way, and cyclic garbage made by requests afterwards is still collected.  Run in a child process
so that this test run's own collector is left as it is."""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = """
import gc, json, weakref
from email_service.server import GC_THRESHOLDS, settle_heap

class Node:
    pass

kept = [Node() for _ in range(1000)]  # alive at start-up
settle_heap()
frozen = gc.get_freeze_count()
node = Node(); node.self = node  # a cycle made after start-up, then dropped (a request's garbage)
probe = weakref.ref(node)
del node
for _ in range(200):  # allocations only: let the thresholds, not an explicit collect, find it
    [[] for _ in range(5000)]
print(json.dumps({"frozen": frozen, "thresholds": gc.get_threshold(), "expected": GC_THRESHOLDS,
                  "collected": probe() is None, "enabled": gc.isenabled()}))
"""


def test_start_up_heap_frozen_and_later_cycles_collected() -> None:
    result = json.loads(subprocess.run([sys.executable, "-c", CHILD], check=True, capture_output=True,
                                       text=True).stdout)  # fmt: skip
    assert result["frozen"] > 1000
    assert result["enabled"] is True
    assert result["thresholds"] == list(result["expected"])
    assert result["collected"] is True

"""The garbage collector for a long-running service: start-up frozen, young objects less often.

CPython's cyclic collector runs a generation-0 pass every 700 net allocations
and, every so often, a full pass over every tracked object: the modules,
classes, pydantic schemas and route tables of start-up included, though none
of them will ever be garbage. py-spy with native frames put ~7 % of the API's
CPU in ``gc_collect_main`` under load. Once a service's process has
imported and built what it runs on (its entry point calls it: never a
library function, which tests run in their own process), :func:`settle_heap`
moves what exists to the permanent generation
(``gc.freeze()``: never scanned again) and raises the generation-0 threshold,
so a collection runs once per some requests instead of several times per
request. Reference counting still frees everything that is not in a cycle at
once; cycles (a traceback holding its frame, a future and its callbacks) wait
a little longer, which costs a little memory, not correctness.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)

#: Net allocations between two generation-0 collections (CPython's default: 700).
YOUNG_THRESHOLD = 20_000


def settle_heap(young_threshold: int = YOUNG_THRESHOLD) -> None:
    """Freeze what start-up built; collect young objects every ``young_threshold`` allocations."""
    gc.collect()  # start-up's own garbage is not frozen with the rest
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
    log.debug("heap settled: %d objects frozen", gc.get_freeze_count())

"""The comparison report and its figures, on their way to `mammoseg.reporting`.

`report.py` and `figures.py` still import the modules they read under the paths those had before the
package was laid out by layer; until their import lines follow, each old path names the module at its
new home (the same module object, not a copy). The table empties when they move.
"""

from __future__ import annotations

import importlib
import sys

MOVED = {
    "mammoseg.errors": "mammoseg.core.errors",
    "mammoseg.atomic": "mammoseg.core.atomic",
    "mammoseg.analysis.stats": "mammoseg.metrics.stats",
    "mammoseg.analysis.metrics": "mammoseg.metrics.metrics",
    "mammoseg.analysis.checkerboard": "mammoseg.metrics.checkerboard",
    "mammoseg.analysis.evaluate": "mammoseg.evaluation.evaluate",
    "mammoseg.analysis.runs": "mammoseg.runs.rundir",
}

for _old, _new in MOVED.items():
    _module = importlib.import_module(_new)
    sys.modules.setdefault(_old, _module)
    _parent, _, _name = _old.rpartition(".")
    if _parent == __name__:
        globals()[_name] = _module

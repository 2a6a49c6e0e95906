"""The layouts `synth` can write: the CBIS-DDSM ones of the layout registry."""

from __future__ import annotations

from mammoseg.dataset import layouts

SYNTH_LAYOUTS = tuple(name for name, layout in layouts.registry().items() if layout.resolver is not None)

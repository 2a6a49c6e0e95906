"""Upsampling designs beyond the article, each the article's final network with its first upsampling
swapped (docs/design.md §1.3): one axis at a time, as the article's Figures 6-9 swap `resize_1` for
`upsample_1`. The article's two arms of that axis are `dilated_resize` (nearest resize; a convolution,
`up_conv2`, follows every design) and `dilated_transpose` (transposed convolution, kernel 4, or 3 with
`transpose_kernel = 3`). What the field uses today besides:

- bilinear resize, then the same convolution (MONAI's `nontrainable` upsampling);
- sub-pixel convolution (Shi et al. 2016; MONAI's and fastai's `pixelshuffle`): a 3x3 convolution to
  4 x 512 channels at 1/32 resolution, then depth-to-space; with ICNR initialisation (Aitken et al.
  2017), which starts it as nearest-neighbour upsampling of a convolution, and without;
- bilinear additive upsampling (Wojna et al. 2019): bilinear x2, then every 4 channels summed, so
  `up_conv2` reads 128 channels instead of 512.
"""

from __future__ import annotations

from mammoseg.models.registry import register
from mammoseg.models.steps import BilinearAdditive, Resize, SubPixel
from mammoseg.models.variants import dilated_variant

for _spec in (
    dilated_variant("dilated_bilinear", "dilated, first upsampling by bilinear resize+conv",
                    (Resize("resize_1", 2, interpolation="bilinear"),)),
    dilated_variant("dilated_subpixel", "dilated, first upsampling by sub-pixel conv (random init)",
                    (SubPixel("upsample_1", 512),)),
    dilated_variant("dilated_subpixel_icnr", "dilated, first upsampling by sub-pixel conv, ICNR init",
                    (SubPixel("upsample_1", 512, icnr=True),)),
    dilated_variant("dilated_bilinear_additive", "dilated, first upsampling by bilinear additive (sum of 4)",
                    (BilinearAdditive("upsample_1"),)),
):
    register(_spec)

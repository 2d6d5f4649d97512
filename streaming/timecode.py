"""A wall-clock timestamp drawn into video as black/white blocks, read back after decoding.

Two rows of 32 blocks (8×8 px, aligned to the codec's 8-px grid, at the top-left): 48 bits of
Unix time in milliseconds, then a 16-bit check so a smeared frame is rejected, not misread.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

BLOCK = 8
BITS_PER_ROW = 32
ORIGIN = (8, 8)  # x, y of the first block
WIDTH = BLOCK * BITS_PER_ROW + 2 * ORIGIN[0]  # smallest frame width that fits
DARK = 16
LIGHT = 235

Plane = npt.NDArray[np.uint8]


def _check(ms: int) -> int:
    return ((ms ^ (ms >> 16) ^ (ms >> 32)) & 0xFFFF) ^ 0xA5A5


def _bits(ms: int) -> list[int]:
    word = ((ms & 0xFFFFFFFFFFFF) << 16) | _check(ms & 0xFFFFFFFFFFFF)
    return [(word >> (63 - index)) & 1 for index in range(64)]


def draw_timecode(luma: Plane, ms: int) -> None:
    """Draw ``ms`` into the luma plane in place."""
    x0, y0 = ORIGIN
    for index, bit in enumerate(_bits(ms)):
        row, column = divmod(index, BITS_PER_ROW)
        y = y0 + row * BLOCK
        x = x0 + column * BLOCK
        luma[y : y + BLOCK, x : x + BLOCK] = LIGHT if bit else DARK


def read_timecode(luma: Plane) -> int | None:
    """The milliseconds drawn in a (decoded) luma plane, or None if the check fails."""
    x0, y0 = ORIGIN
    height, width = luma.shape
    if width < WIDTH or height < y0 + 2 * BLOCK:
        return None
    area = luma[y0 : y0 + 2 * BLOCK, x0 : x0 + BITS_PER_ROW * BLOCK].astype(np.int32)
    # mean of each block's centre 4×4, where codec ringing is weakest
    blocks = area.reshape(2, BLOCK, BITS_PER_ROW, BLOCK)[:, 2:6, :, 2:6].mean(axis=(1, 3))
    word = 0
    for bit in (blocks.reshape(-1) > (DARK + LIGHT) / 2).tolist():
        word = (word << 1) | int(bit)
    ms, check = word >> 16, word & 0xFFFF
    return ms if check == _check(ms) else None

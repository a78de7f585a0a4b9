"""The frequency sketch of TinyLFU: a count-min sketch with a doorkeeper and aging.

Four rows of saturating 4-bit counters (values 0..15, one per byte of a ``bytearray``)
indexed by multiplicative hashing of the key's hash. Increments are conservative (only the
counters equal to the current minimum grow), which tightens the estimate. The first
sighting of a hash only enters the *doorkeeper* (a set of hashes); the counters are
touched from the second sighting on, so one-hit wonders never pollute them. After
``sample_size`` recorded accesses every counter is halved (one C-level
``bytearray.translate``) and the doorkeeper is cleared: that is TinyLFU's aging, which
keeps the estimate a recent frequency rather than an all-time one.
"""

from __future__ import annotations

__all__ = ["FrequencySketch"]

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_HALVE = bytes(b >> 1 for b in range(256))
_MAX = 15


class FrequencySketch:
    """Estimate how often a hash was seen recently (TinyLFU's approximate counter).

    Args:
        capacity: the cache capacity it serves; the table has ``4 * w`` counters with
            ``w`` the next power of two >= ``capacity`` (at least 16), and it ages every
            ``10 * capacity`` increments.

    Example::

        sketch = FrequencySketch(1000)
        slots, estimate = sketch.record("user:1")   # estimate == 1 (the doorkeeper)
        sketch.increment(slots)
        assert sketch.frequency(slots) == 2
    """

    __slots__ = ("_door", "_mask", "_table", "_width", "additions", "sample_size")

    def __init__(self, capacity: int) -> None:
        width = 16
        while width < capacity:
            width <<= 1
        self._width = width
        self._mask = width - 1
        self._table = bytearray(4 * width)
        self._door: set[int] = set()
        self.sample_size = max(10 * capacity, 160)
        self.additions = 0

    def slots(self, key: object) -> tuple[int, int, int, int, int]:
        """``(door, i0, i1, i2, i3)`` for ``key``: its doorkeeper hash (``hash(key)``) and
        its four counter indices (multiplicative hashing). Entries keep theirs, so hits
        and evictions do no hashing."""
        h = hash(key)
        m = self._mask
        w = self._width
        if w <= 0x8000:  # two 30-bit products (fast small-int arithmetic), 15-bit slices
            x = (h * 0x9E3779B1) & 0x3FFFFFFF
            x ^= x >> 15
            y = (x * 0x85EBCA6B) & 0x3FFFFFFF
            y ^= y >> 15
            return (h, x & m, w + ((x >> 15) & m), 2 * w + (y & m), 3 * w + ((y >> 15) & m))
        x = (h * _GOLDEN) & _M64  # wider tables: double hashing on 64 bits
        h2 = (x >> 32) | 1
        return (
            h,
            x & m,
            w + ((x + h2) & m),
            2 * w + ((x + 2 * h2) & m),
            3 * w + ((x + 3 * h2) & m),
        )

    def record(self, key: object) -> tuple[tuple[int, int, int, int, int], int]:
        """:meth:`slots` then :meth:`increment` in one call: the slots and the new estimate.
        (The hashing of :meth:`slots` is repeated inline: this runs on every cache miss.)"""
        h = hash(key)
        m = self._mask
        w = self._width
        if w <= 0x8000:
            x = (h * 0x9E3779B1) & 0x3FFFFFFF
            x ^= x >> 15
            y = (x * 0x85EBCA6B) & 0x3FFFFFFF
            y ^= y >> 15
            i0 = x & m
            i1 = w + ((x >> 15) & m)
            i2 = 2 * w + (y & m)
            i3 = 3 * w + ((y >> 15) & m)
            slots = (h, i0, i1, i2, i3)
        else:
            slots = self.slots(key)
            h, i0, i1, i2, i3 = slots
        t = self._table
        a = t[i0]
        b = t[i1]
        c = t[i2]
        d = t[i3]
        low = a if a < b else b
        if c < low:
            low = c
        if d < low:
            low = d
        self.additions += 1
        door = self._door
        if h in door:
            if low < _MAX:
                low += 1
                if a < low:
                    t[i0] = low
                if b < low:
                    t[i1] = low
                if c < low:
                    t[i2] = low
                if d < low:
                    t[i3] = low
        else:
            door.add(h)
        return slots, low + 1

    def frequency(self, slots: tuple[int, int, int, int, int]) -> int:
        """The estimated recent count (0..16) of the key with these :meth:`slots`."""
        x, i0, i1, i2, i3 = slots
        t = self._table
        f = min(t[i0], t[i1], t[i2], t[i3])
        return f + 1 if x in self._door else f

    def increment(self, slots: tuple[int, int, int, int, int]) -> int:
        """Record one sighting of the key with these :meth:`slots` (the first one only
        enters the doorkeeper) and return its new estimate (as :meth:`frequency`).
        Aging is the owner's call: see :attr:`additions`."""
        x, i0, i1, i2, i3 = slots
        door = self._door
        self.additions += 1
        if x not in door:
            door.add(x)
            t = self._table
            return min(t[i0], t[i1], t[i2], t[i3]) + 1
        t = self._table
        a = t[i0]
        b = t[i1]
        c = t[i2]
        d = t[i3]
        low = min(a, b, c, d)
        if low < _MAX:
            low += 1
            if a < low:
                t[i0] = low
            if b < low:
                t[i1] = low
            if c < low:
                t[i2] = low
            if d < low:
                t[i3] = low
        return low + 1

    def absorb(self, slots: tuple[int, int, int, int, int], count: int) -> None:
        """Fold an exactly counted frequency back in (conservatively: each counter
        becomes at least ``count``, saturated). The cache counts the accesses of resident
        entries in the entry itself and folds them in when the entry leaves."""
        if count <= 1:  # the doorkeeper already holds the first sighting
            return
        x, i0, i1, i2, i3 = slots
        self._door.add(x)
        count -= 1
        if count > _MAX:
            count = _MAX
        t = self._table
        if t[i0] < count:
            t[i0] = count
        if t[i1] < count:
            t[i1] = count
        if t[i2] < count:
            t[i2] = count
        if t[i3] < count:
            t[i3] = count

    def age(self) -> None:
        """Halve every counter and clear the doorkeeper."""
        self._table = self._table.translate(_HALVE)
        self._door.clear()
        self.additions //= 2

    def clear(self) -> None:
        """Forget everything."""
        self._table = bytearray(len(self._table))
        self._door.clear()
        self.additions = 0

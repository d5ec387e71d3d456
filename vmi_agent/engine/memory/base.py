# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""The interface every guest-physical memory source offers."""

import bisect
import mmap
import os

from vmi_agent.engine.errors import MemoryAccessError, MemoryFormatError


class PhysicalMemory:
    """Guest-physical memory backed by one mapped file.

    A source is a sorted list of *runs*: ``(guest_start, length, file_offset)``.  Reads
    go straight to the mapping, so a live RAM file is read while the guest runs.  A read
    that leaves the run it starts in raises :class:`MemoryAccessError`: guest structures
    never straddle two runs legitimately, and refusing keeps every read one slice.
    """

    def __init__(self, path, runs):
        self.path = path
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise MemoryFormatError('cannot open %s: %s' % (path, exc.strerror)) from exc
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                raise MemoryFormatError('%s is empty' % path)
            self._map = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        except (OSError, ValueError) as exc:
            raise MemoryFormatError('cannot map %s: %s' % (path, exc)) from exc
        finally:
            os.close(fd)
        self.file_size = size
        runs = sorted((s, n, o) for s, n, o in runs if n > 0 and o < size)
        self._runs = [(s, min(n, size - o), o) for s, n, o in runs]
        self._starts = [r[0] for r in self._runs]
        if not self._runs:
            raise MemoryFormatError('%s holds no guest RAM' % path)
        self._first = self._runs[0]

    # -- reading -------------------------------------------------------------------------
    def read(self, paddr, size):
        """Return ``size`` bytes at guest-physical ``paddr``."""
        start, length, offset = self._first
        delta = paddr - start
        if 0 <= delta and delta + size <= length and size >= 0:
            # The common case (all RAM below the PCI hole) costs one comparison.
            offset += delta
            return self._map[offset:offset + size]
        i = bisect.bisect_right(self._starts, paddr) - 1
        if i >= 0 and size >= 0:
            start, length, offset = self._runs[i]
            delta = paddr - start
            if delta + size <= length:
                offset += delta
                return self._map[offset:offset + size]
        raise MemoryAccessError(paddr, size)

    def first_run(self):
        """``(mapping, guest_start, length, file_offset)`` of the lowest run.

        For hot loops that read many small objects: the caller checks bounds and slices
        the mapping itself, saving two calls per read.
        """
        start, length, offset = self._first
        return self._map, start, length, offset

    def view(self, paddr, size):
        """A zero-copy memoryview of ``size`` bytes at ``paddr`` (for big scans)."""
        i = bisect.bisect_right(self._starts, paddr) - 1
        if i >= 0:
            start, length, offset = self._runs[i]
            delta = paddr - start
            if delta + size <= length:
                offset += delta
                return memoryview(self._map)[offset:offset + size]
        raise MemoryAccessError(paddr, size)

    def ranges(self):
        """The backed guest-physical ranges as ``(start, end)`` pairs, ascending."""
        return [(s, s + n) for s, n, _ in self._runs]

    @property
    def size(self):
        """Total bytes of guest RAM this source holds."""
        return sum(n for _, n, _ in self._runs)

    def find(self, needle, start=0, end=None):
        """Yield every guest-physical address where ``needle`` occurs (C-speed scan)."""
        for rstart, length, offset in self._runs:
            rend = rstart + length
            lo, hi = max(start, rstart), rend if end is None else min(end, rend)
            if lo >= hi:
                continue
            pos = offset + (lo - rstart)
            stop = offset + (hi - rstart)
            while True:
                hit = self._map.find(needle, pos, stop)
                if hit < 0:
                    break
                yield rstart + (hit - offset)
                pos = hit + 1

    def contains(self, paddr, size=1):
        i = bisect.bisect_right(self._starts, paddr) - 1
        return i >= 0 and paddr - self._runs[i][0] + size <= self._runs[i][1]

    # -- lifetime ------------------------------------------------------------------------
    def close(self):
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                # A memoryview handed out by view() is still alive; the mapping goes
                # when the last one does.
                pass
            self._map = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

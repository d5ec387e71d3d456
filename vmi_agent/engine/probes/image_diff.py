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

"""Where a region of the kernel image differs from its baseline.

Three questions, each asked only where the one before found something: which pages
changed (:class:`BaselineCopies`), where in a changed page (:func:`diff_runs`), and
which bytes were there and are there now (:class:`RegionBytes`).

The first is asked of the whole image on every run (about 23 MiB on Debian's 6.1), so
it is the cost of a clean run.  Hashing every page with SHA-256 against the stored
digests took 22-60 ms (SHA-256 runs at 1-1.5 GB/s even with the SHA extensions, and a
call per page adds a third).  Instead the first comparison in a process keeps an exact
copy of the baseline's bytes, and later runs compare the live image with it at memcmp
speed (about 3 ms), in blocks of 64 KiB, page by page only inside a block that differs.
An exact comparison catches everything a digest would.  Cheaper digests do not help:
BLAKE2b is slower than SHA-256 on CPUs with the SHA extensions, and CRC32 or Adler-32
(up to twice as fast) are linear, so a rootkit, which knows the pristine text (it is a
distribution's kernel), can keep a page's checksum with four bytes of its choice.

The copy does not trust the guest: the live region is copied once, that copy (not live
memory, which the guest may rewrite meanwhile) is hashed and checked against the
stored digests, and the pages that differ are replaced by the baseline's own (checked
against their digests as they are read).  Every run checks the copy against the stored
baseline (same digests), so a baseline renewed or replaced by another process is
noticed and the copy rebuilt.  A copy is as large as its region, one set per guest
(per attached kernel); a process keeps at most :data:`COPY_BUDGET` bytes of them, and
a guest past the budget has its pages hashed on every run instead.
"""

import threading
import weakref

from vmi_agent.engine.baseline import PAGE_SIZE, page_digests

#: Bytes of baseline copies one process keeps, all guests together: ten guests of
#: Debian's 6.1 (23 MiB of text and read-only data each).
COPY_BUDGET = 256 << 20
#: A copy's block: compared with the live image whole, then page by page if it differs.
BLOCK = 64 << 10

_LOCK = threading.Lock()
#: Every BaselineCopies that holds (or held) a copy, to sum what the process holds.
_ALL = weakref.WeakSet()
#: bytes.translate() table: 0 stays 0, anything else becomes 1.
_NONZERO = bytes([0]) + bytes([1]) * 255


class BaselineCopies:
    """Exact copies of one guest's baseline regions, for :meth:`changed_pages`.

    Use ``kernel.memo(BaselineCopies)``: copies live as long as the attached kernel.
    ``owner`` names the baseline the copies are of (store, guest, kernel build): a
    kernel compared under another guest identity starts over.
    """

    def __init__(self, kernel=None):
        #: Bytes of copies held, counted against COPY_BUDGET.
        self.held = 0
        self._owner = None
        self._copies = {}           # region name -> (page digests, RegionCopy)

    def changed_pages(self, owner, name, image, live):
        """Indexes of the pages of ``live`` that differ from ``image``, the stored
        baseline (a :class:`~vmi_agent.engine.baseline.PageImage`) of region ``name``.
        """
        copy = self._copy(owner, name, image.digests)
        if copy is not None:
            if copy.size == len(live):
                return copy.differing_pages(live)
            self._forget(name)
        size = len(live)
        if size != image.size or not self._reserve(size):
            return _changed_by_digest(image, page_digests(live))
        try:
            copy = RegionCopy(live)
            changed = _changed_by_digest(image, copy.page_digests())
            for index in changed:
                copy.put_page(index, image.page(index))
        except BaseException:
            self._release(size)
            raise
        self._copies[name] = image.digests, copy
        return changed

    def keep(self, owner, name, digests, copy):
        """Keep ``copy``, a :class:`RegionCopy` of region ``name`` of a baseline just
        taken, whose page digests are ``digests``.
        """
        self._copy(owner, name, None)
        if self._reserve(copy.size):
            self._copies[name] = digests, copy

    def _copy(self, owner, name, digests):
        """The copy of region ``name`` if it is of the baseline with ``digests``.

        Any other copy of the region, and all copies of another owner, are dropped.
        """
        if owner != self._owner:
            for other in list(self._copies):
                self._forget(other)
            self._owner = owner
        entry = self._copies.get(name)
        if entry is not None and entry[0] == digests:
            return entry[1]
        if entry is not None:
            self._forget(name)
        return None

    def _forget(self, name):
        self._release(self._copies.pop(name)[1].size)

    def _reserve(self, size):
        with _LOCK:
            if sum(copies.held for copies in _ALL) + size > COPY_BUDGET:
                return False
            self.held += size
            _ALL.add(self)
            return True

    def _release(self, size):
        with _LOCK:
            self.held -= size


class RegionCopy:
    """A copy of a region's bytes in blocks of :data:`BLOCK` bytes.

    Blocks rather than one buffer so that finding which pages differ copies nothing: a
    bytearray compares with a live memoryview by memcmp, but only whole (slicing it
    would copy), and a memoryview compares with anything byte by byte, 20 times slower.
    """

    def __init__(self, data):
        self.size = len(data)
        self.blocks = [bytearray(data[at:at + BLOCK]) for at in range(0, self.size, BLOCK)]

    def page_digests(self):
        """What :func:`~vmi_agent.engine.baseline.page_digests` gives for the copy."""
        return b''.join(page_digests(block) for block in self.blocks)

    def put_page(self, index, page):
        block, at = divmod(index * PAGE_SIZE, BLOCK)
        self.blocks[block][at:at + len(page)] = page

    def differing_pages(self, live):
        """Indexes of the pages where ``live``, a buffer of the same size, differs."""
        pages = []
        for number, block in enumerate(self.blocks):
            base = number * BLOCK
            if block == live[base:base + len(block)]:
                continue
            for at in range(0, len(block), PAGE_SIZE):
                if block[at:at + PAGE_SIZE] != live[base + at:base + at + PAGE_SIZE]:
                    pages.append((base + at) // PAGE_SIZE)
        return pages


def _changed_by_digest(image, digests):
    """Indexes of the pages whose digest in ``digests`` differs from ``image``'s."""
    if digests == image.digests:
        return []
    size = len(image.digest(0))
    return [i for i in range(image.pages)
            if digests[i * size:(i + 1) * size] != image.digest(i)]


def diff_runs(old, new):
    """``[(start, end)]`` offsets of the maximal runs where ``old`` and ``new`` differ.

    At C speed where it can (a page in 15 us rather than 50 us byte by byte in Python,
    a rewritten page in 20 us rather than 800 us): the two are XORed as big integers,
    the result mapped to a 0/1 byte per position, and the runs of ones found by
    ``find``.
    """
    size = min(len(old), len(new))
    xor = (int.from_bytes(old[:size], 'little')
           ^ int.from_bytes(new[:size], 'little')).to_bytes(size, 'little')
    differs = xor.translate(_NONZERO)
    runs = []
    start = differs.find(1)
    while start >= 0:
        end = differs.find(0, start)
        end = size if end < 0 else end
        runs.append((start, end))
        start = differs.find(1, end)
    return runs


class RegionBytes:
    """Baseline and live bytes of one region, by runtime address.

    ``old(addr, n)`` and ``new(addr, n)`` are None outside the region.  The comparison
    reads the same few pages many times (a site, its neighbours), in address order:
    the last page of each kind is kept.
    """

    def __init__(self, region, image, view):
        self.region, self.image, self.view = region, image, view
        self._last = {}

    def old(self, addr, size):
        return self._get(addr, size, 'old')

    def new(self, addr, size):
        return self._get(addr, size, 'new')

    def old_page(self, index):
        return self._page('old', index)

    def new_page(self, index):
        return self._page('new', index)

    def _get(self, addr, size, which):
        region = self.region
        if addr < region.start or addr + size > region.end:
            return None
        out = b''
        while size > 0:
            index, offset = divmod(addr - region.start, PAGE_SIZE)
            chunk = self._page(which, index)[offset:offset + size]
            out += chunk
            addr += len(chunk)
            size -= len(chunk)
        return out

    def _page(self, which, index):
        last = self._last.get(which)
        if last is not None and last[0] == index:
            return last[1]
        if which == 'old':
            page = self.image.page(index)
        else:
            start = index * PAGE_SIZE
            page = bytes(self.view[start:start + PAGE_SIZE])
        self._last[which] = index, page
        return page

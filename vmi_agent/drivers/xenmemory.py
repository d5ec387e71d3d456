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

"""Guest-physical memory of a Xen domain, through foreign mappings from dom0.

:class:`ForeignMemory` offers what the engine asks of a ``PhysicalMemory`` (``read``,
``view``, ``find``, ``ranges``, ``first_run``, ``contains``, ``size``, ``close``) but
has no file behind it: it maps the domain's frames with ``xenforeignmemory_map`` a chunk
at a time (``[xen] chunk_pages``) and keeps a bounded LRU of mapped chunks
(``[xen] chunk_cache``), unmapping the oldest when it needs room and all of them on
close.

The guest decides its own p2m (ballooning, grant and foreign mappings, MMIO holes), so a
frame may not be mappable: Xen reports that per page in the ``err`` array, and such a
page is never touched (touching it would be SIGBUS in dom0); reading it raises
:class:`MemoryAccessError`.  Reads copy out of the mapping (``view`` too), so nothing the
engine holds can outlive an unmap.

``ranges()`` is found by probing: the chunks from gfn 0 are mapped until as many pages
as the domain owns (``tot_pages``) have been seen, or the highest gfn, with a hard cap
on pages probed so that a guest that places one page far up costs a bounded amount of
work.  ``first_run()`` returns an empty mapping: there is no single mapping of all RAM,
so the page-table walker's fast path (``AddressSpace.set_direct_map``) is never taken
and every read goes through :meth:`read`.

For the driver's copy-before-write snapshot it keeps an *overlay*: pages copied, by
:meth:`ForeignMemory.preserve`, just before the guest's first write to them landed.
While the overlay is on, a read returns a copied page's old content and reads every
other page live (unwritten since the snapshot began, since every write to it would
have been copied first).  A read and a copy exclude each other (one lock), so a read
never sees half of a page that is being copied and lifted.  The overlay is bounded
(``max_pages`` copies); past the bound a written page is only remembered as *lost*
(its later reads may be torn), and the lost set is bounded too (:data:`MAX_LOST`,
past which every page read that is not in the overlay counts as possibly written).
"""

import collections
import ctypes
import threading

from vmi_agent.drivers import xenlibs
from vmi_agent.engine.errors import MemoryAccessError

PAGE_SHIFT = xenlibs.PAGE_SHIFT
PAGE_SIZE = xenlibs.PAGE_SIZE
#: Largest single read or view: bounds what a garbage size from guest data can cost.
MAX_READ = 256 * 1024 * 1024
#: Probing gives up this many pages past what the domain owns (4 GiB of holes: the
#: MMIO hole below 4 GiB is at most that).
PROBE_SLACK_PAGES = 1 << 20
#: Most gfns remembered as written-but-not-copied per snapshot (see the docstring).
MAX_LOST = 1 << 16

#: What :meth:`ForeignMemory.preserve` did with a page.
COPIED, KEPT, FULL, UNREADABLE, OFF = 'copied', 'kept', 'full', 'unreadable', 'off'


class OverlayResult:
    """What one overlay held when it was dropped (see :meth:`ForeignMemory.stop_overlay`).

    ``copied`` is the number of pages copied; ``lost`` the gfns written without a copy
    (overlay full, or the page could not be read); ``lost_overflow`` is True when more
    than :data:`MAX_LOST` were lost, so ``lost`` is incomplete; ``preserved`` the copied
    gfns.
    """

    def __init__(self, preserved=(), lost=(), lost_overflow=False):
        self.preserved = frozenset(preserved)
        self.copied = len(self.preserved)
        self.lost = frozenset(lost)
        self.lost_overflow = lost_overflow

    def written(self, touched):
        """The gfns among ``touched`` whose reads may have seen a guest write, sorted."""
        if self.lost_overflow:
            return sorted(set(touched) - self.preserved)
        return sorted(self.lost.intersection(touched))


class Chunk:
    """One foreign mapping: ``npages`` frames from ``base`` gfn at address ``addr``."""

    def __init__(self, base, npages, addr, errors):
        self.base = base
        self.npages = npages
        self.addr = addr
        #: Per page: 0 when mapped, else the (negative) errno Xen gave.
        self.errors = errors

    def bad_page(self, first, last):
        """The first gfn in ``[first, last]`` that is not mapped, or None."""
        for gfn in range(first, last + 1):
            if self.errors[gfn - self.base]:
                return gfn
        return None


class ForeignMemory:
    """The RAM of domain ``domid`` through ``libs.fmem`` (see the module docstring)."""

    def __init__(self, libs, fmem, domid, max_gpfn, tot_pages, chunk_pages=512,
                 cache_chunks=64):
        self._libs = libs
        self._fmem = fmem
        self.domid = domid
        #: Not a file: the key the engine's per-source caches (attach's VMCOREINFO
        #: hints) use, one per domain.
        self.path = 'xen:domain/%d' % domid
        self.limit = max_gpfn + 1           # gfns [0, limit) may exist
        self.tot_pages = tot_pages
        self.chunk_pages = chunk_pages
        self.cache_chunks = cache_chunks
        self._chunks = collections.OrderedDict()    # chunk index -> Chunk, LRU first
        self._lock = threading.Lock()
        self._ranges = None
        self._touched = None
        self._overlay = None            # gfn -> bytes copied before the guest wrote
        self._overlay_max = 0
        self._lost = set()
        self._lost_overflow = False
        self._closed = False

    # -- chunks --------------------------------------------------------------------------
    def _map_chunk(self, index):
        """Map chunk ``index``; a Chunk (maybe with bad pages) or None if the call failed."""
        base = index * self.chunk_pages
        npages = min(self.chunk_pages, self.limit - base)
        gfns = (xenlibs.xen_pfn_t * npages)(*range(base, base + npages))
        errs = (ctypes.c_int * npages)()
        addr = self._libs.fmem.xenforeignmemory_map(
            self._fmem, self.domid, xenlibs.PROT_READ, npages, gfns, errs)
        if not addr:
            return None
        return Chunk(base, npages, addr, tuple(errs))

    def _chunk(self, index):
        """Chunk ``index`` from the cache or newly mapped (the caller holds the lock)."""
        chunk = self._chunks.get(index)
        if chunk is not None:
            self._chunks.move_to_end(index)
            return chunk
        if self._closed:
            raise MemoryAccessError(index * self.chunk_pages << PAGE_SHIFT, 0,
                                    'the guest memory was closed')
        chunk = self._map_chunk(index)
        if chunk is None:
            return None
        while len(self._chunks) >= self.cache_chunks:
            _, old = self._chunks.popitem(last=False)
            self._unmap(old)
        self._chunks[index] = chunk
        return chunk

    def _unmap(self, chunk):
        self._libs.fmem.xenforeignmemory_unmap(self._fmem, chunk.addr, chunk.npages)

    # -- reading -------------------------------------------------------------------------
    def read(self, paddr, size):
        """``size`` bytes at guest-physical ``paddr`` (a copy)."""
        if size < 0 or size > MAX_READ or paddr < 0:
            raise MemoryAccessError(paddr, size, 'refusing a read of this size')
        if size == 0:
            return b''
        if (paddr + size - 1) >> PAGE_SHIFT >= self.limit:
            raise MemoryAccessError(paddr, size, 'beyond the domain\'s highest gfn')
        parts = []
        pos, end = paddr, paddr + size
        with self._lock:
            while pos < end:
                index = (pos >> PAGE_SHIFT) // self.chunk_pages
                chunk = self._chunk(index)
                if chunk is None:
                    raise MemoryAccessError(paddr, size, 'gfn 0x%x cannot be mapped '
                                            '(errno %d)' % (pos >> PAGE_SHIFT,
                                                            self._libs.errno()))
                chunk_end = (chunk.base + chunk.npages) << PAGE_SHIFT
                stop = min(end, chunk_end)
                first, last = pos >> PAGE_SHIFT, (stop - 1) >> PAGE_SHIFT
                bad = chunk.bad_page(first, last)
                if bad is not None:
                    raise MemoryAccessError(paddr, size, 'gfn 0x%x is not mapped in '
                                            'the domain (error %d)'
                                            % (bad, chunk.errors[bad - chunk.base]))
                if self._touched is not None:
                    self._touched.update(range(first, last + 1))
                if self._overlay:
                    parts.extend(self._overlaid(chunk, pos, stop))
                else:
                    parts.append(self._mapped(chunk, pos, stop))
                pos = stop
        return parts[0] if len(parts) == 1 else b''.join(parts)

    @staticmethod
    def _mapped(chunk, pos, stop):
        return ctypes.string_at(chunk.addr + pos - (chunk.base << PAGE_SHIFT), stop - pos)

    def _overlaid(self, chunk, pos, stop):
        """The bytes ``[pos, stop)`` of ``chunk``, copied pages from the overlay."""
        while pos < stop:
            gfn = pos >> PAGE_SHIFT
            page_start = gfn << PAGE_SHIFT
            page_end = min(stop, page_start + PAGE_SIZE)
            saved = self._overlay.get(gfn)
            if saved is None:
                yield self._mapped(chunk, pos, page_end)
            else:
                yield saved[pos - page_start:page_end - page_start]
            pos = page_end

    def view(self, paddr, size):
        """A memoryview of a copy of ``size`` bytes at ``paddr`` (never of the mapping)."""
        return memoryview(self.read(paddr, size))

    def first_run(self):
        """An empty run: no mapping covers all RAM, so callers take their slow path."""
        return b'', 0, 0, 0

    def find(self, needle, start=0, end=None, block=None):
        """Yield every guest-physical address of ``needle`` in the mappable ranges."""
        block = block or self.chunk_pages << PAGE_SHIFT
        keep = max(len(needle) - 1, 0)
        for rstart, rend in self.ranges():
            lo, hi = max(start, rstart), rend if end is None else min(end, rend)
            carry, pos = b'', lo
            while pos < hi:
                n = min(block - pos % block, hi - pos)
                try:
                    data = carry + self.read(pos, n)
                except MemoryAccessError:
                    carry, pos = b'', pos + n      # the guest changed its p2m: skip
                    continue
                base = pos - len(carry)
                hit = data.find(needle)
                while hit >= 0:
                    yield base + hit
                    hit = data.find(needle, hit + 1)
                carry = data[len(data) - keep:] if keep else b''
                pos += n

    def contains(self, paddr, size=1):
        return any(s <= paddr and paddr + size <= e for s, e in self.ranges())

    def ranges(self):
        """Mappable guest-physical ranges ``(start, end)``, ascending (probed once)."""
        if self._ranges is None:
            self._ranges = self._probe()
        return list(self._ranges)

    def _probe(self):
        runs = []
        found = 0
        budget = self.tot_pages + PROBE_SLACK_PAGES
        index = 0
        with self._lock:
            while index * self.chunk_pages < self.limit and found < self.tot_pages:
                if index * self.chunk_pages >= budget:
                    break
                chunk = self._chunk(index)
                index += 1
                if chunk is None:
                    continue
                for i, err in enumerate(chunk.errors):
                    if err:
                        continue
                    found += 1
                    gfn = chunk.base + i
                    if runs and runs[-1][1] == gfn:
                        runs[-1][1] = gfn + 1
                    else:
                        runs.append([gfn, gfn + 1])
        return [(s << PAGE_SHIFT, e << PAGE_SHIFT) for s, e in runs]

    @property
    def size(self):
        """Bytes of guest RAM found mappable."""
        return sum(e - s for s, e in self.ranges())

    # -- snapshot support ----------------------------------------------------------------
    def start_tracking(self):
        """Remember every gfn read from now on (see :meth:`stop_tracking`)."""
        with self._lock:
            self._touched = set()

    def stop_tracking(self):
        """Stop remembering; return the gfns read since :meth:`start_tracking`."""
        with self._lock:
            touched, self._touched = self._touched or set(), None
        return touched

    def start_overlay(self, max_pages):
        """Start keeping pages copied by :meth:`preserve`, at most ``max_pages``."""
        with self._lock:
            self._overlay = {}
            self._overlay_max = max_pages
            self._lost = set()
            self._lost_overflow = False

    def preserve(self, gfn):
        """Copy page ``gfn`` as it is now into the overlay (before a write lands).

        Returns :data:`COPIED`, :data:`KEPT` (copied before), :data:`FULL` (the
        overlay holds ``max_pages``: the page is lost), :data:`UNREADABLE` (lost too)
        or :data:`OFF` (no overlay).
        """
        with self._lock:
            if self._overlay is None:
                return OFF
            if gfn in self._overlay:
                return KEPT
            if len(self._overlay) >= self._overlay_max:
                self._lose(gfn)
                return FULL
            data = self._page_locked(gfn)
            if data is None:
                self._lose(gfn)
                return UNREADABLE
            self._overlay[gfn] = data
            return COPIED

    def _lose(self, gfn):
        if len(self._lost) < MAX_LOST:
            self._lost.add(gfn)
        elif gfn not in self._lost:
            self._lost_overflow = True

    def _page_locked(self, gfn):
        """The content of page ``gfn`` through its mapping, or None (lock held)."""
        if self._closed or not 0 <= gfn < self.limit:
            return None
        chunk = self._chunk(gfn // self.chunk_pages)
        if chunk is None or chunk.errors[gfn - chunk.base]:
            return None
        return self._mapped(chunk, gfn << PAGE_SHIFT, (gfn + 1) << PAGE_SHIFT)

    def stop_overlay(self):
        """Drop the overlay; an :class:`OverlayResult` saying what it held."""
        with self._lock:
            result = OverlayResult(self._overlay or (), self._lost, self._lost_overflow)
            self._overlay = None
            self._lost = set()
            self._lost_overflow = False
        return result

    @property
    def overlay_pages(self):
        """Pages in the overlay now (0 when it is off)."""
        return len(self._overlay or ())

    def ram_gfns(self):
        """Every mappable gfn, ascending (a generator)."""
        for s, e in self.ranges():
            yield from range(s >> PAGE_SHIFT, e >> PAGE_SHIFT)

    # -- lifetime ------------------------------------------------------------------------
    @property
    def mapped_chunks(self):
        """Base gfns of the chunks mapped now, least recently used first."""
        return [c.base for c in self._chunks.values()]

    def close(self):
        with self._lock:
            self._closed = True
            while self._chunks:
                _, chunk = self._chunks.popitem(last=False)
                self._unmap(chunk)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

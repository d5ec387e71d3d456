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

"""x86-64 virtual-to-physical translation for a guest.

Two routes to a physical address:

* the page walk from a directory table base (CR3, or the physical address of the kernel's
  ``init_top_pgt``), 4 or 5 levels, with 1 GiB and 2 MiB pages;
* the kernel's *direct map*: every guest-physical byte also appears at
  ``page_offset_base + paddr``.  Slab objects (tasks, creds) live there, so plain
  arithmetic replaces four dependent reads per page.

Translations are cached per page until :meth:`AddressSpace.flush` (a run flushes at its
start, so a guest that changes its page tables is seen at the next run).
"""

from vmi_agent.engine.errors import Interrupted, MemoryAccessError, TranslationError

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = PAGE_SIZE - 1
_PRESENT = 1
_LARGE = 0x80
_FRAME = 0x000ffffffffff000
_LARGE_1G = 0x000fffffc0000000
_LARGE_2M = 0x000fffffffe00000
#: Upper bound of one read; no guest structure we interpret is larger.
MAX_READ = 64 << 20


def is_canonical(vaddr, levels=4):
    """True when ``vaddr`` is canonical for a ``levels``-level page table."""
    bits = 48 if levels == 4 else 57
    top = vaddr >> (bits - 1)
    return top == 0 or top == (1 << (65 - bits)) - 1


class AddressSpace:
    """One guest virtual address space over a :class:`PhysicalMemory`."""

    def __init__(self, memory, dtb, levels=4):
        if levels not in (4, 5):
            raise ValueError('x86-64 page tables have 4 or 5 levels, not %r' % levels)
        self.memory = memory
        self.dtb = dtb & _FRAME
        self.levels = levels
        self._cache = {}
        self._dm_start = self._dm_end = 0
        # The direct map's view of the lowest RAM run: [lo, hi) reads straight from the
        # mapping at vaddr - base (see read()).
        self._map = self._view = None
        self._fast_lo = self._fast_hi = self._fast_base = 0
        self._page_offset_base = None
        self._interrupted = None

    def set_direct_map(self, page_offset_base):
        """Declare where the kernel's direct map of all physical memory starts."""
        self._page_offset_base = page_offset_base
        top = max(end for _, end in self.memory.ranges())
        self._dm_start = page_offset_base
        self._dm_end = page_offset_base + top
        self._map, start, length, offset = self.memory.first_run()
        self._view = memoryview(self._map)
        self._fast_lo = page_offset_base + start
        self._fast_hi = self._fast_lo + length
        self._fast_base = self._fast_lo - offset

    def flush(self):
        """Forget cached translations (the guest may have changed its page tables)."""
        self._cache.clear()

    def interrupt(self, reason):
        """Make every later read raise :class:`Interrupted` until :meth:`resume`.

        This is how a caller stops a probe that runs too long (from another thread:
        probes are plain loops over reads).  The fast paths below carry no check; this
        switches them off, and the slow path checks.
        """
        self._interrupted = reason
        self._fast_lo, self._fast_hi = 1, 0
        self._dm_start = self._dm_end = 0

    def resume(self):
        """Undo :meth:`interrupt`."""
        self._interrupted = None
        if self._page_offset_base is not None:
            self.set_direct_map(self._page_offset_base)

    def translate(self, vaddr):
        """Return the guest-physical address of ``vaddr`` or raise TranslationError."""
        if self._interrupted is not None:
            raise Interrupted(self._interrupted)
        if self._dm_start <= vaddr < self._dm_end:
            return vaddr - self._dm_start
        page = vaddr >> PAGE_SHIFT
        base = self._cache.get(page)
        if base is None:
            base = self._walk(vaddr)
            self._cache[page] = base
        return base | (vaddr & PAGE_MASK)

    def _walk(self, vaddr):
        if not 0 <= vaddr < 1 << 64 or not is_canonical(vaddr, self.levels):
            raise TranslationError(vaddr, 'non-canonical address')
        read = self.memory.read
        table = self.dtb
        shift = 39 if self.levels == 4 else 48
        while True:
            index = (vaddr >> shift) & 0x1ff
            try:
                entry = int.from_bytes(read(table + index * 8, 8), 'little')
            except MemoryAccessError:
                raise TranslationError(vaddr, 'page table at 0x%x is outside guest RAM'
                                       % table) from None
            if not entry & _PRESENT:
                raise TranslationError(vaddr, 'not present (level %d)'
                                       % ((shift - 12) // 9 + 1))
            if shift == 12:
                return entry & _FRAME
            if entry & _LARGE and shift in (30, 21):
                mask = _LARGE_1G if shift == 30 else _LARGE_2M
                return (entry & mask) | (vaddr & ((1 << shift) - 1) & ~PAGE_MASK)
            table = entry & _FRAME
            shift -= 9

    def read(self, vaddr, size):
        """Return ``size`` bytes at ``vaddr``, following pages wherever they are."""
        if self._fast_lo <= vaddr and vaddr + size <= self._fast_hi and size >= 0:
            # Slab objects (tasks, creds) in low RAM: plain arithmetic, one slice.
            off = vaddr - self._fast_base
            return self._map[off:off + size]
        if self._interrupted is not None:
            raise Interrupted(self._interrupted)
        if size > MAX_READ or size < 0:
            raise TranslationError(vaddr, 'refusing a read of %d bytes' % size)
        try:
            if self._dm_start <= vaddr and vaddr + size <= self._dm_end:
                return self.memory.read(vaddr - self._dm_start, size)
            if size <= PAGE_SIZE - (vaddr & PAGE_MASK):
                return self.memory.read(self.translate(vaddr), size)
            parts = []
            while size > 0:
                chunk = min(size, PAGE_SIZE - (vaddr & PAGE_MASK))
                parts.append(self.memory.read(self.translate(vaddr), chunk))
                vaddr += chunk
                size -= chunk
            return b''.join(parts)
        except MemoryAccessError as exc:
            raise TranslationError(vaddr, 'maps to 0x%x, outside guest RAM'
                                   % exc.paddr) from None

    def view(self, vaddr, size):
        """Like :meth:`read`, but zero-copy where it can be: for hot loops.

        A view of low RAM through the direct map is a window on live guest memory,
        not a snapshot: unpack what you need from it at once and drop it.
        """
        if self._fast_lo <= vaddr and vaddr + size <= self._fast_hi and size >= 0:
            off = vaddr - self._fast_base
            return self._view[off:off + size]
        return self.read(vaddr, size)

    def is_mapped(self, vaddr):
        try:
            self.translate(vaddr)
        except TranslationError:
            return False
        return True

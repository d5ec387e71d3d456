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

"""An attached Linux kernel: a profile placed in one guest's memory.

This is what probes receive.  It reads guest virtual memory through the kernel's page
tables, resolves symbols to their runtime addresses, and walks kernel lists with the
bounds a hostile guest requires: every walk has a step limit, detects cycles, and checks
that each pointer is canonical, translatable and points back the way it came.
"""

import struct

from vmi_agent.engine.errors import GuestDataError
from vmi_agent.engine.paging import AddressSpace

_U64 = struct.Struct('<Q')
_U32 = struct.Struct('<I')
_I32 = struct.Struct('<i')
#: Upper bound of a kernel list walk: far above any real task or module count, far
#: below what could exhaust the agent.
MAX_LIST = 1 << 20
MAX_STRING = 4096


class LinuxKernel:
    """A kernel build (``profile``) at a place (``location``) in ``memory``."""

    def __init__(self, memory, profile, location):
        self.memory = memory
        self.profile = profile
        self.location = location
        self.space = AddressSpace(memory, location.dtb, location.levels)
        self.space.set_direct_map(location.page_offset_base)
        self._memo = {}

    def memo(self, make):
        """``make(self)``, computed once per kernel: for probes' precomputed offsets."""
        value = self._memo.get(make)
        if value is None:
            value = self._memo[make] = make(self)
        return value

    @property
    def release(self):
        return self.profile.release

    @property
    def kaslr_shift(self):
        return self.location.shift

    # -- symbols and types --------------------------------------------------------------
    def symbol(self, name):
        """Runtime address of a kernel symbol."""
        return self.profile.address(name) + self.location.shift

    def symbol_at(self, vaddr):
        """``(name, offset)`` of the kernel symbol at or below a runtime address."""
        return self.profile.symbols.lookup(vaddr - self.location.shift)

    def struct(self, name):
        return self.profile.struct(name)

    # -- reading ------------------------------------------------------------------------
    def flush(self):
        """Forget cached translations: call at the start of every run."""
        self.space.flush()

    def read(self, vaddr, size):
        return self.space.read(vaddr, size)

    def u64(self, vaddr):
        return _U64.unpack_from(self.space.view(vaddr, 8))[0]

    def u32(self, vaddr):
        return _U32.unpack_from(self.space.view(vaddr, 4))[0]

    def i32(self, vaddr):
        return _I32.unpack(self.space.read(vaddr, 4))[0]

    def cstring(self, vaddr, limit=MAX_STRING):
        """A NUL-terminated string of at most ``limit`` bytes, decoded leniently.

        Reads page by page so that a string near the end of a mapping is still read, and
        a string with no NUL costs ``limit`` bytes, no more.
        """
        out = b''
        while len(out) < limit:
            chunk = min(limit - len(out), 4096 - ((vaddr + len(out)) & 4095))
            data = self.space.read(vaddr + len(out), chunk)
            nul = data.find(b'\0')
            if nul >= 0:
                return (out + data[:nul]).decode('utf-8', 'replace')
            out += data
        return out.decode('utf-8', 'replace')

    # -- lists --------------------------------------------------------------------------
    def walk_list(self, head, offset, limit=MAX_LIST):
        """Yield the address of each entry of the ``list_head`` at ``head``.

        ``offset`` is the list member's offset in the containing struct; the yielded
        address is the struct's.  Raises GuestDataError when the list is longer than
        ``limit``, loops back anywhere but its head, or a link's ``prev`` does not point
        back (a torn or forged list); TranslationError for a wild pointer.
        """
        for entry, _ in self.walk_list_read(head, offset, offset, 16, limit):
            yield entry

    def walk_list_read(self, head, offset, start, size, limit=MAX_LIST):
        """Like :meth:`walk_list`, yielding ``(entry, bytes)`` for each entry.

        ``bytes`` are ``size`` bytes at ``entry + start``, read in the same slice as
        the links, which must lie inside them: one read per entry.  They may be a
        zero-copy view of live memory (see ``AddressSpace.view``): parse, then drop.
        """
        link = offset - start
        if link < 0 or link + 16 > size:
            raise ValueError('the list member must lie inside the bytes read')
        read = self.space.view
        unpack = _NEXT_PREV.unpack_from
        seen = set()
        prev = head
        node = _U64.unpack(self.space.read(head, 8))[0]
        while node != head:
            if node in seen:
                raise GuestDataError('list at 0x%x loops back to 0x%x' % (head, node))
            if len(seen) >= limit:
                raise GuestDataError('list at 0x%x is longer than %d entries'
                                     % (head, limit))
            seen.add(node)
            entry = node - offset
            data = read(entry + start, size)
            nxt, back = unpack(data, link)
            if back != prev:
                raise GuestDataError('list at 0x%x is broken at 0x%x (prev 0x%x, '
                                     'expected 0x%x)' % (head, node, back, prev))
            yield entry, data
            prev, node = node, nxt


_NEXT_PREV = struct.Struct('<QQ')

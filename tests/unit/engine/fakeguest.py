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

"""Synthetic guest-physical memory for unit tests: RAM, x86-64 page tables, a kernel.

The real guest is exercised by the functional tests; these images let unit tests build
exactly the shapes the engine must handle, including the hostile ones (cycles, wild
pointers, forged banners) that a real guest would need a rootkit to produce.
"""

import struct

PAGE = 4096
PRESENT_RW = 0x3
LARGE = 0x80


class FakeGuest:
    """A bytearray of guest RAM with a page-table builder."""

    def __init__(self, size=32 << 20, tables_at=0x100000, levels=4):
        self.ram = bytearray(size)
        self.levels = levels
        self._next_table = tables_at
        self.dtb = self._alloc_table()

    def _alloc_table(self):
        addr = self._next_table
        self._next_table += PAGE
        return addr

    # -- physical ----------------------------------------------------------------------
    def write(self, paddr, data):
        self.ram[paddr:paddr + len(data)] = data

    def u64(self, paddr, value):
        struct.pack_into('<Q', self.ram, paddr, value)

    def read_u64(self, paddr):
        return struct.unpack_from('<Q', self.ram, paddr)[0]

    # -- page tables -------------------------------------------------------------------
    def map(self, vaddr, paddr, size=PAGE, page=PAGE):
        """Map ``size`` bytes at ``vaddr`` to ``paddr`` with pages of ``page`` bytes."""
        leaf_shift = {PAGE: 12, 2 << 20: 21, 1 << 30: 30}[page]
        for off in range(0, size, page):
            self._map_one(vaddr + off, paddr + off, leaf_shift)
        self._virt = getattr(self, '_virt', [])
        self._virt.append((vaddr, paddr, size))

    def _map_one(self, vaddr, paddr, leaf_shift):
        table = self.dtb
        shift = 39 if self.levels == 4 else 48
        while shift > leaf_shift:
            slot = table + ((vaddr >> shift) & 0x1ff) * 8
            entry = self.read_u64(slot)
            if not entry & 1:
                entry = self._alloc_table() | PRESENT_RW
                self.u64(slot, entry)
            table = entry & 0x000ffffffffff000
            shift -= 9
        slot = table + ((vaddr >> shift) & 0x1ff) * 8
        self.u64(slot, paddr | PRESENT_RW | (LARGE if leaf_shift > 12 else 0))

    def entry_slot(self, vaddr, level):
        """Physical address of the page-table entry for ``vaddr`` at ``level`` (1 = PTE)."""
        table = self.dtb
        shift = 39 if self.levels == 4 else 48
        top = 4 if self.levels == 4 else 5
        for lvl in range(top, level, -1):
            table = self.read_u64(table + ((vaddr >> shift) & 0x1ff) * 8) & 0xffffffffff000
            shift -= 9
        return table + ((vaddr >> shift) & 0x1ff) * 8

    def vaddr_to_paddr(self, vaddr):
        for v, p, n in reversed(self._virt):
            if v <= vaddr < v + n:
                return p + vaddr - v
        raise KeyError(hex(vaddr))

    def vwrite(self, vaddr, data):
        self.write(self.vaddr_to_paddr(vaddr), data)

    def vu64(self, vaddr, value):
        self.u64(self.vaddr_to_paddr(vaddr), value)

    def save(self, path):
        with open(path, 'wb') as f:
            f.write(self.ram)
        return str(path)

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

"""A synthetic Linux kernel in a :class:`FakeGuest`: enough for locate and the probes.

It has a banner, page tables mapping the image at a KASLR shift, a direct map, an
``init_task`` with a task list and a ``modules`` list, laid out by a small hand-made
profile.  Tests then corrupt it the ways a hostile guest could.
"""

import struct

from tests.unit.engine.fakeguest import FakeGuest
from vmi_agent.engine.linux.kernel import LinuxKernel
from vmi_agent.engine.linux.locate import locate
from vmi_agent.engine.linux.profile import Profile
from vmi_agent.engine.linux.symbols import SymbolTable
from vmi_agent.engine.memory import RamFile

TEXT_LINK = 0xffffffff81000000
SHIFT = 0x2e00000
PHYS_TEXT = 0x1000000
IMAGE_SIZE = 2 << 20
PAGE_OFFSET = 0xffff9a4000000000
BANNER = 'Linux version 6.1.0-fake (test@example) #1 SMP\n'

SYMBOLS = {'_text': 0, 'linux_banner': 0x1000, 'init_top_pgt': 0x2000,
           'page_offset_base': 0x3000, 'init_task': 0x4000, 'modules': 0x5000}

TASK = {'size': 0x80, 'members': {
    'flags': {'offset': 0x04, 'size': 4, 'kind': 'int'},
    'tasks': {'offset': 0x10, 'size': 16, 'kind': 'struct', 'type': 'list_head'},
    'pid': {'offset': 0x20, 'size': 4, 'kind': 'int'},
    'tgid': {'offset': 0x24, 'size': 4, 'kind': 'int'},
    'real_parent': {'offset': 0x28, 'size': 8, 'kind': 'ptr', 'target': 'task_struct'},
    'cred': {'offset': 0x30, 'size': 8, 'kind': 'ptr', 'target': 'cred'},
    'mm': {'offset': 0x38, 'size': 8, 'kind': 'ptr'},
    'comm': {'offset': 0x40, 'size': 16, 'kind': 'array', 'count': 16, 'elem_size': 1},
}}
CRED = {'size': 0x20, 'members': {'uid': {'offset': 8, 'size': 4, 'kind': 'struct'}}}
LIST_HEAD = {'size': 16, 'members': {'next': {'offset': 0, 'size': 8, 'kind': 'ptr'},
                                     'prev': {'offset': 8, 'size': 8, 'kind': 'ptr'}}}
MODULE = {'size': 0x100, 'members': {
    'state': {'offset': 0, 'size': 4, 'kind': 'enum'},
    'list': {'offset': 8, 'size': 16, 'kind': 'struct', 'type': 'list_head'},
    'name': {'offset': 24, 'size': 56, 'kind': 'array', 'count': 56, 'elem_size': 1},
    'core_layout': {'offset': 0x80, 'size': 16, 'kind': 'struct', 'type': 'module_layout'},
    'init_layout': {'offset': 0x90, 'size': 16, 'kind': 'struct', 'type': 'module_layout'},
}}
MODULE_LAYOUT = {'size': 16, 'members': {'size': {'offset': 8, 'size': 4, 'kind': 'int'}}}
LAYOUTS = {'task_struct': TASK, 'cred': CRED, 'list_head': LIST_HEAD, 'module': MODULE,
           'module_layout': MODULE_LAYOUT}
ENUMS = {'module_state': {'MODULE_STATE_LIVE': 0, 'MODULE_STATE_COMING': 1,
                          'MODULE_STATE_GOING': 2, 'MODULE_STATE_UNFORMED': 3}}
#: Slab-like area for tasks, creds and modules: physical, reached via the direct map.
HEAP = 0x1400000


def profile():
    symbols = SymbolTable([(TEXT_LINK + off, 'D', name) for name, off in SYMBOLS.items()])
    return Profile('6.1.0-fake', BANNER, None, symbols, LAYOUTS, ENUMS)


class FakeKernel:
    """Builds the image; ``task()``/``module()`` add objects; ``attach()`` reads it."""

    def __init__(self, shift=SHIFT):
        self.g = FakeGuest(size=32 << 20)
        self.shift = shift
        g = self.g
        # The kernel image, mapped at its shifted virtual address.
        g.map(TEXT_LINK + shift, PHYS_TEXT, size=IMAGE_SIZE, page=2 << 20)
        g.write(PHYS_TEXT + SYMBOLS['linux_banner'], BANNER.encode() + b'\0')
        # Point init_top_pgt at the page tables the guest really uses.
        self._copy_top_table()
        g.map(PAGE_OFFSET, 0, size=1 << 30, page=1 << 30)
        g.u64(PHYS_TEXT + SYMBOLS['page_offset_base'], PAGE_OFFSET)
        self._heap = HEAP
        self.init_task = self.sym('init_task')
        self._link_head(self.init_task + 0x10)
        self._link_head(self.sym('modules'))
        self.root_cred = self.cred(0)
        self._write_task(self.init_task, 0, 0, 'swapper/0', self.init_task, kthread=True)

    def _copy_top_table(self):
        # init_top_pgt is inside the image: make it the real top table.
        pgt = PHYS_TEXT + SYMBOLS['init_top_pgt']
        self.g.ram[pgt:pgt + 4096] = self.g.ram[self.g.dtb:self.g.dtb + 4096]
        self.g.dtb = pgt

    def sym(self, name):
        return TEXT_LINK + self.shift + SYMBOLS[name]

    def dm(self, paddr):
        return PAGE_OFFSET + paddr

    def alloc(self, size):
        addr = self._heap
        self._heap += (size + 63) & ~63
        return addr

    # -- objects -------------------------------------------------------------------------
    def _link_head(self, head):
        self.g.vu64(head, head)
        self.g.vu64(head + 8, head)

    def list_add_tail(self, head, node):
        prev = self.read_v64(head + 8)
        self.g.vu64(node, head)
        self.g.vu64(node + 8, prev)
        self.g.vu64(prev, node)
        self.g.vu64(head + 8, node)

    def read_v64(self, vaddr):
        return self.g.read_u64(self.g.vaddr_to_paddr(vaddr))

    def cred(self, uid):
        phys = self.alloc(0x20)
        struct.pack_into('<I', self.g.ram, phys + 8, uid)
        return self.dm(phys)

    def _write_task(self, task, pid, tgid, comm, parent, cred=None, kthread=False):
        p = self.g.vaddr_to_paddr(task)
        struct.pack_into('<I', self.g.ram, p + 0x04, 0x00200000 if kthread else 0)
        struct.pack_into('<ii', self.g.ram, p + 0x20, pid, tgid)
        struct.pack_into('<QQQ', self.g.ram, p + 0x28, parent, cred or self.root_cred, 0)
        self.g.ram[p + 0x40:p + 0x50] = comm.encode()[:15].ljust(16, b'\0')

    def task(self, pid, comm, parent=None, uid=0, kthread=False):
        task = self.dm(self.alloc(0x80))
        cred = self.root_cred if uid == 0 else self.cred(uid)
        self._write_task(task, pid, pid, comm, parent or self.init_task, cred, kthread)
        self.list_add_tail(self.init_task + 0x10, task + 0x10)
        return task

    def module(self, name, size, state=0):
        mod = self.dm(self.alloc(0x100))
        p = self.g.vaddr_to_paddr(mod)
        struct.pack_into('<I', self.g.ram, p, state)
        self.g.ram[p + 24:p + 80] = name.encode().ljust(56, b'\0')
        struct.pack_into('<I', self.g.ram, p + 0x88, size)
        self.list_add_tail(self.sym('modules'), mod + 8)
        return mod

    def attach(self, tmp_path):
        memory = RamFile(self.g.save(tmp_path / 'ram'))
        prof = profile()
        return LinuxKernel(memory, prof, locate(memory, prof))


def mutate_heap(ram, nudges, writes):
    """Hypothesis' damage to the synthetic heap: nudge words by deltas, overwrite others.

    ``nudges`` and ``writes`` are ``(word index, value)`` pairs; a nudge adds its value to
    the word (pointers then point a little off), a write replaces it.
    """
    for word, delta in nudges:
        off = HEAP + 8 * word
        value = struct.unpack_from('<Q', ram, off)[0]
        struct.pack_into('<Q', ram, off, (value + delta) % 2 ** 64)
    for word, value in writes:
        struct.pack_into('<Q', ram, HEAP + 8 * word, value)

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

"""Guest RAM as one flat file: a live shared RAM file, or a raw dump of one.

QEMU (and libvirt with ``file_backed_memory``) keeps a guest's RAM in a file given by
``-object memory-backend-file,...,share=on``.  The file holds RAM in order, but the guest
does not see it at the same offsets when RAM is larger than the low-memory window: the
machine type moves the rest above 4 GiB, leaving a hole for PCI.  This module applies the
split QEMU applies (``hw/i386/pc_q35.c`` / ``pc_piix.c``).
"""

import os

from vmi_agent.engine.errors import MemoryFormatError
from vmi_agent.engine.memory.base import PhysicalMemory

GiB = 1 << 30
FOUR_GIB = 4 * GiB

#: machine type -> (RAM size from which the split starts, RAM kept below 4 GiB then).
SPLITS = {
    'q35': (0xB0000000, 0x80000000),
    'pc': (0xE0000000, 0xC0000000),
}
MACHINES = tuple(SPLITS) + ('flat',)


def ram_layout(size, machine='q35'):
    """Return the runs ``(guest_start, length, file_offset)`` of ``size`` bytes of RAM."""
    if machine == 'flat':
        return [(0, size, 0)]
    try:
        threshold, low = SPLITS[machine]
    except KeyError:
        raise MemoryFormatError('unknown machine type %r (expected one of %s)'
                                % (machine, ', '.join(MACHINES))) from None
    if size < threshold:
        return [(0, size, 0)]
    return [(0, low, 0), (FOUR_GIB, size - low, low)]


class RamFile(PhysicalMemory):
    """A RAM file (live or dumped) with the machine type's low/high split applied."""

    def __init__(self, path, machine='q35'):
        try:
            size = os.stat(path).st_size
        except OSError as exc:
            raise MemoryFormatError('cannot open %s: %s' % (path, exc.strerror)) from exc
        super().__init__(path, ram_layout(size, machine))
        self.machine = machine

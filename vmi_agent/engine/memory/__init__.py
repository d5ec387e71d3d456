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

"""Guest-physical memory sources.

A source answers one question: what bytes are at this guest-physical address?  It knows
nothing of page tables or kernels.  :func:`open_memory` picks the source for a file.
"""

from vmi_agent.engine.memory.base import PhysicalMemory
from vmi_agent.engine.memory.elfcore import ElfCore
from vmi_agent.engine.memory.ramfile import RamFile
from vmi_agent.engine.errors import MemoryFormatError

FORMATS = ('auto', 'raw', 'elf')


def open_memory(path, fmt='auto', machine='q35'):
    """Open a memory image: a live shared RAM file, a raw dump or an ELF core.

    ``auto`` looks at the first bytes: an ELF header means a core file (QEMU's
    ``dump-guest-memory``), anything else is raw guest RAM laid out as ``machine`` lays
    it out (see :class:`RamFile`).
    """
    if fmt not in FORMATS:
        raise MemoryFormatError('unknown memory format %r (expected one of %s)'
                                % (fmt, ', '.join(FORMATS)))
    if fmt == 'auto':
        try:
            with open(path, 'rb') as f:
                magic = f.read(4)
        except OSError as exc:
            raise MemoryFormatError('cannot open %s: %s' % (path, exc.strerror)) from exc
        fmt = 'elf' if magic == b'\x7fELF' else 'raw'
    if fmt == 'elf':
        return ElfCore(path)
    return RamFile(path, machine=machine)


__all__ = ['PhysicalMemory', 'RamFile', 'ElfCore', 'open_memory', 'FORMATS']

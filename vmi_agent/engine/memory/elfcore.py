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

"""An ELF core file of guest-physical memory, as QEMU's ``dump-guest-memory`` writes it.

With ``paging=false`` every ``PT_LOAD`` segment's ``p_paddr`` is a guest-physical address.
QEMU also adds notes; when the guest published its VMCOREINFO (``-device vmcoreinfo``
and the guest's ``qemu_fw_cfg`` driver) one of them carries that text, which saves a scan.
"""

import struct

from vmi_agent.engine.errors import MemoryFormatError
from vmi_agent.engine.memory.base import PhysicalMemory

PT_LOAD = 1
PT_NOTE = 4
MAX_PHDRS = 4096
MAX_NOTES_BYTES = 1 << 20

_EHDR = struct.Struct('<16sHHIQQQIHHHHHH')
_PHDR = struct.Struct('<IIQQQQQQ')


class ElfCore(PhysicalMemory):
    """Guest RAM from a 64-bit little-endian ELF core."""

    def __init__(self, path):
        try:
            with open(path, 'rb') as f:
                head = f.read(_EHDR.size)
                if len(head) < _EHDR.size or head[:4] != b'\x7fELF':
                    raise MemoryFormatError('%s is not an ELF file' % path)
                if head[4] != 2 or head[5] != 1:
                    raise MemoryFormatError('%s is not a 64-bit little-endian ELF core'
                                            % path)
                (_, e_type, _, _, _, e_phoff, _, _, _, e_phentsize, e_phnum,
                 _, _, _) = _EHDR.unpack(head)
                if e_type != 4:
                    raise MemoryFormatError('%s is an ELF file but not a core dump' % path)
                if e_phentsize != _PHDR.size or not 0 < e_phnum <= MAX_PHDRS:
                    raise MemoryFormatError('%s has a corrupt program header table'
                                            % path)
                f.seek(e_phoff)
                table = f.read(e_phnum * _PHDR.size)
                if len(table) != e_phnum * _PHDR.size:
                    raise MemoryFormatError('%s is truncated' % path)
                phdrs = [_PHDR.unpack_from(table, i * _PHDR.size) for i in range(e_phnum)]
                runs, notes = [], []
                for p_type, _, p_offset, _, p_paddr, p_filesz, _, _ in phdrs:
                    if p_type == PT_LOAD:
                        runs.append((p_paddr, p_filesz, p_offset))
                    elif p_type == PT_NOTE and p_filesz <= MAX_NOTES_BYTES:
                        f.seek(p_offset)
                        notes.append(f.read(p_filesz))
        except OSError as exc:
            raise MemoryFormatError('cannot read %s: %s' % (path, exc.strerror)) from exc
        super().__init__(path, runs)
        self.notes = list(_iter_notes(b''.join(notes)))

    def note(self, name):
        """The descriptor of the first note called ``name`` (e.g. ``VMCOREINFO``)."""
        for note_name, _, desc in self.notes:
            if note_name == name:
                return desc
        return None


def _iter_notes(data):
    """Yield ``(name, type, desc)`` for each ELF note; stop quietly at garbage."""
    pos = 0
    while pos + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from('<III', data, pos)
        pos += 12
        name_end = pos + ((namesz + 3) & ~3)
        desc_end = name_end + ((descsz + 3) & ~3)
        if desc_end > len(data):
            return
        name = bytes(data[pos:pos + namesz]).rstrip(b'\0').decode('ascii', 'replace')
        yield name, ntype, bytes(data[name_end:name_end + descsz])
        pos = desc_end

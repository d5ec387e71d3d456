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

"""Guest-physical memory sources: RAM files, raw dumps and ELF cores."""

import struct

import pytest

from vmi_agent.engine.errors import MemoryAccessError, MemoryFormatError
from vmi_agent.engine.memory import ElfCore, RamFile, open_memory
from vmi_agent.engine.memory.ramfile import ram_layout

GiB = 1 << 30


def test_small_q35_ram_is_flat():
    assert ram_layout(256 << 20, 'q35') == [(0, 256 << 20, 0)]


def test_q35_moves_ram_above_2g_to_4g_when_larger_than_2_75g():
    assert ram_layout(3 * GiB, 'q35') == [(0, 2 * GiB, 0), (4 * GiB, GiB, 2 * GiB)]


def test_pc_machine_keeps_3g_low():
    assert ram_layout(4 * GiB, 'pc') == [(0, 3 * GiB, 0), (4 * GiB, GiB, 3 * GiB)]


def test_unknown_machine_is_a_clear_error():
    with pytest.raises(MemoryFormatError, match='unknown machine type'):
        ram_layout(GiB, 'sparc')


def test_ramfile_reads_both_sides_of_the_pci_hole(tmp_path):
    path = tmp_path / 'ram'
    with open(path, 'wb') as f:
        f.truncate(3 * GiB)           # sparse: costs no disk
        f.seek(2 * GiB - 4)
        f.write(b'LOW!')
        f.seek(2 * GiB)
        f.write(b'HIGH')
    with RamFile(str(path)) as mem:
        assert mem.read(2 * GiB - 4, 4) == b'LOW!'
        assert mem.read(4 * GiB, 4) == b'HIGH'
        with pytest.raises(MemoryAccessError):
            mem.read(2 * GiB, 4)      # the hole
        with pytest.raises(MemoryAccessError):
            mem.read(2 * GiB - 2, 4)  # straddles the hole
        assert list(mem.find(b'HIGH', 2 * GiB - 4096, 4 * GiB + 4096)) == [4 * GiB]
        assert mem.size == 3 * GiB


def test_read_past_the_end_is_an_access_error(tmp_path):
    path = tmp_path / 'ram'
    path.write_bytes(b'\1' * 8192)
    with RamFile(str(path)) as mem:
        assert mem.read(8188, 4) == b'\1' * 4
        with pytest.raises(MemoryAccessError, match='0x1ffe'):
            mem.read(8190, 4)


def test_missing_and_empty_files_are_format_errors(tmp_path):
    with pytest.raises(MemoryFormatError, match='cannot open'):
        open_memory(str(tmp_path / 'nope'))
    (tmp_path / 'empty').write_bytes(b'')
    with pytest.raises(MemoryFormatError, match='empty'):
        open_memory(str(tmp_path / 'empty'))


def test_unknown_format_is_rejected(tmp_path):
    with pytest.raises(MemoryFormatError, match='unknown memory format'):
        open_memory(str(tmp_path / 'x'), 'vmdk')


def make_core(path, segments, notes=b''):
    """A minimal ELF64 core: ``segments`` is [(paddr, bytes)]."""
    phnum = len(segments) + (1 if notes else 0)
    offset = 64 + phnum * 56
    phdrs, blobs = [], []
    if notes:
        phdrs.append(struct.pack('<IIQQQQQQ', 4, 0, offset, 0, 0, len(notes),
                                 len(notes), 0))
        blobs.append(notes)
        offset += len(notes)
    for paddr, data in segments:
        phdrs.append(struct.pack('<IIQQQQQQ', 1, 0, offset, 0, paddr, len(data),
                                 len(data), 0))
        blobs.append(data)
        offset += len(data)
    ident = b'\x7fELF\x02\x01\x01' + b'\0' * 9
    ehdr = struct.pack('<16sHHIQQQIHHHHHH', ident, 4, 62, 1, 0, 64, 0, 0, 64, 56,
                       phnum, 0, 0, 0)
    path.write_bytes(ehdr + b''.join(phdrs) + b''.join(blobs))
    return str(path)


def note(name, desc, ntype=0):
    name = name.encode() + b'\0'
    pad = lambda b: b + b'\0' * (-len(b) % 4)  # noqa: E731
    return struct.pack('<III', len(name), len(desc), ntype) + pad(name) + pad(desc)


def test_elf_core_maps_segments_by_physical_address(tmp_path):
    path = make_core(tmp_path / 'core', [(0, b'a' * 4096), (0x100000, b'b' * 4096)],
                     notes=note('CORE', b'x' * 5) + note('VMCOREINFO', b'OSRELEASE=6.1\n'))
    with open_memory(path) as mem:
        assert isinstance(mem, ElfCore)
        assert mem.read(0x100010, 2) == b'bb'
        assert mem.ranges() == [(0, 4096), (0x100000, 0x101000)]
        assert mem.note('VMCOREINFO') == b'OSRELEASE=6.1\n'
        with pytest.raises(MemoryAccessError):
            mem.read(4096, 1)


def test_elf_that_is_not_a_core_is_rejected(tmp_path):
    path = tmp_path / 'exe'
    ident = b'\x7fELF\x02\x01\x01' + b'\0' * 9
    path.write_bytes(struct.pack('<16sHHIQQQIHHHHHH', ident, 2, 62, 1, 0, 64, 0, 0, 64,
                                 56, 0, 0, 0, 0))
    with pytest.raises(MemoryFormatError, match='not a core dump'):
        open_memory(str(path))


def test_truncated_core_is_rejected(tmp_path):
    path = make_core(tmp_path / 'core', [(0, b'a' * 4096)])
    data = open(path, 'rb').read()
    (tmp_path / 'short').write_bytes(data[:80])
    with pytest.raises(MemoryFormatError, match='truncated'):
        ElfCore(str(tmp_path / 'short'))

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

"""x86-64 translation: 4 KiB, 2 MiB and 1 GiB pages, the direct map, and bad entries."""

import pytest

from tests.unit.engine.fakeguest import FakeGuest
from vmi_agent.engine.errors import TranslationError
from vmi_agent.engine.memory import RamFile
from vmi_agent.engine.paging import AddressSpace, is_canonical

KTEXT = 0xffffffff81000000


@pytest.fixture
def guest():
    return FakeGuest(size=8 << 20)


def space_of(guest, tmp_path, levels=4):
    mem = RamFile(guest.save(tmp_path / 'ram'))
    return AddressSpace(mem, guest.dtb, levels)


def test_4k_pages_translate_byte_exact(guest, tmp_path):
    guest.map(KTEXT, 0x400000, size=2 * 4096)
    guest.write(0x400ff8, b'ABCDEFGH' + b'IJKL')
    space = space_of(guest, tmp_path)
    assert space.translate(KTEXT + 0x123) == 0x400123
    assert space.read(KTEXT + 0xff8, 12) == b'ABCDEFGHIJKL'


def test_read_across_pages_that_are_not_contiguous(guest, tmp_path):
    guest.map(KTEXT, 0x400000)
    guest.map(KTEXT + 4096, 0x200000)
    guest.write(0x400ffe, b'ab')
    guest.write(0x200000, b'cd')
    assert space_of(guest, tmp_path).read(KTEXT + 0xffe, 4) == b'abcd'


def test_2m_page(guest, tmp_path):
    guest.map(0xffffffffc0000000, 0x200000, size=2 << 20, page=2 << 20)
    space = space_of(guest, tmp_path)
    assert space.translate(0xffffffffc0000000 + 0x1fffff) == 0x3fffff


def test_1g_page(tmp_path):
    guest = FakeGuest(size=4 << 20)
    guest.map(0xffff888000000000, 0, size=1 << 30, page=1 << 30)
    space = space_of(guest, tmp_path)
    assert space.translate(0xffff888000000000 + 0x3ffff123) == 0x3ffff123


def test_5_level_tables(tmp_path):
    guest = FakeGuest(size=4 << 20, levels=5)
    guest.map(0xff11000000001000, 0x300000)
    guest.write(0x300010, b'five')
    space = space_of(guest, tmp_path, levels=5)
    assert space.read(0xff11000000001010, 4) == b'five'


def test_not_present_is_a_clean_error(guest, tmp_path):
    guest.map(KTEXT, 0x400000)
    with pytest.raises(TranslationError, match='not present'):
        space_of(guest, tmp_path).translate(KTEXT + 4096)


def test_read_running_into_an_unmapped_page_fails(guest, tmp_path):
    guest.map(KTEXT, 0x400000)
    with pytest.raises(TranslationError):
        space_of(guest, tmp_path).read(KTEXT + 4000, 200)


def test_non_canonical_address_is_refused(guest, tmp_path):
    with pytest.raises(TranslationError, match='non-canonical'):
        space_of(guest, tmp_path).translate(0x0000900000000000)
    assert not is_canonical(0x0000900000000000)
    assert is_canonical(0xffff800000000000)
    assert is_canonical(0xff00000000000000, levels=5)


def test_page_table_pointing_outside_ram(guest, tmp_path):
    guest.map(KTEXT, 0x400000)
    guest.u64(guest.entry_slot(KTEXT, 2), 0x7000000000 | 3)   # PD -> far away
    with pytest.raises(TranslationError, match='outside guest RAM'):
        space_of(guest, tmp_path).translate(KTEXT)


def test_leaf_pointing_outside_ram(guest, tmp_path):
    guest.map(KTEXT, 0x7000000000)
    with pytest.raises(TranslationError, match='outside guest RAM'):
        space_of(guest, tmp_path).read(KTEXT, 8)


def test_self_referencing_tables_terminate(guest, tmp_path):
    """A PML4 entry pointing at the PML4 itself: the walk is depth-bounded."""
    guest.u64(guest.dtb + 511 * 8, guest.dtb | 3)
    space = space_of(guest, tmp_path)
    # Four levels through the same table: a leaf made of the table's own address.
    assert space.translate(0xfffffffffffff000) == guest.dtb


def test_direct_map_is_arithmetic(guest, tmp_path):
    space = space_of(guest, tmp_path)
    space.set_direct_map(0xffff990000000000)
    guest_ram_byte = 0x5000
    assert space.translate(0xffff990000000000 + guest_ram_byte) == guest_ram_byte
    with pytest.raises(TranslationError):
        space.read(0xffff990000000000 + (8 << 20) - 4, 8)   # runs past RAM


def test_flush_sees_changed_tables(guest, tmp_path):
    guest.map(KTEXT, 0x400000)
    path = guest.save(tmp_path / 'ram')
    space = AddressSpace(RamFile(path), guest.dtb)
    assert space.translate(KTEXT) == 0x400000
    with open(path, 'r+b') as f:
        f.seek(guest.entry_slot(KTEXT, 1))
        f.write((0x500000 | 3).to_bytes(8, 'little'))
    assert space.translate(KTEXT) == 0x400000       # cached
    space.flush()
    assert space.translate(KTEXT) == 0x500000


def test_huge_reads_are_refused(guest, tmp_path):
    with pytest.raises(TranslationError, match='refusing'):
        space_of(guest, tmp_path).read(KTEXT, 1 << 40)

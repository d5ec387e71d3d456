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

"""KASLR: finding a known kernel build's physical and virtual placement."""

import pytest

from tests.unit.engine.fakekernel import (BANNER, IMAGE_SIZE, PAGE_OFFSET, PHYS_TEXT,
                                          SHIFT, SYMBOLS, FakeKernel, profile)
from vmi_agent.engine.errors import ProfileError
from vmi_agent.engine.linux.locate import locate
from vmi_agent.engine.linux.vmcoreinfo import VmcoreInfo
from vmi_agent.engine.memory import RamFile


def memory_of(fake, tmp_path):
    return RamFile(fake.g.save(tmp_path / 'ram'))


def test_finds_both_shifts_and_the_direct_map(tmp_path):
    loc = locate(memory_of(FakeKernel(), tmp_path), profile())
    assert (loc.phys_text, loc.shift, loc.levels) == (PHYS_TEXT, SHIFT, 4)
    assert loc.dtb == PHYS_TEXT + SYMBOLS['init_top_pgt']
    assert loc.page_offset_base == PAGE_OFFSET


@pytest.mark.parametrize('shift', [0, 0x200000, 0x3fe00000 - 0x1000000])
def test_any_slot_of_the_window(tmp_path, shift):
    assert locate(memory_of(FakeKernel(shift=shift), tmp_path), profile()).shift == shift


def test_a_forged_banner_at_an_aligned_slot_is_not_believed(tmp_path):
    """A guest plants the banner where the kernel is not: the page tables disagree."""
    fake = FakeKernel()
    fake.g.write(0x400000 + SYMBOLS['linux_banner'], BANNER.encode())
    loc = locate(memory_of(fake, tmp_path), profile())
    assert loc.phys_text == PHYS_TEXT


def test_forged_vmcoreinfo_is_checked(tmp_path):
    fake = FakeKernel()
    lie = VmcoreInfo.parse(b'OSRELEASE=6.1.0-fake\nKERNELOFFSET=4000000\n'
                           b'NUMBER(phys_base)=0\n')
    loc = locate(memory_of(fake, tmp_path), profile(), [lie])
    assert loc.shift == SHIFT


def test_another_kernel_is_not_found(tmp_path):
    fake = FakeKernel()
    fake.g.write(PHYS_TEXT + SYMBOLS['linux_banner'], b'Linux version 5.10 other\0')
    with pytest.raises(ProfileError, match='not in this memory image'):
        locate(memory_of(fake, tmp_path), profile())


def test_unmapped_image_is_not_found(tmp_path):
    fake = FakeKernel()
    for off in range(0, IMAGE_SIZE, 2 << 20):      # unmap the image's 2 MiB pages
        fake.g.u64(fake.g.entry_slot(fake.sym('_text') + off, 2), 0)
    with pytest.raises(ProfileError):
        locate(memory_of(fake, tmp_path), profile())


def test_default_direct_map_when_page_offset_base_is_garbage(tmp_path):
    fake = FakeKernel()
    fake.g.u64(PHYS_TEXT + SYMBOLS['page_offset_base'], 0x1234)
    with pytest.raises(ProfileError, match='direct map'):
        locate(memory_of(fake, tmp_path), profile())

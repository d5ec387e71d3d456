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

"""VMCOREINFO: parsing the kernel's kdump text and finding it in RAM."""

from tests.unit.engine.fakeguest import FakeGuest
from vmi_agent.engine.linux import vmcoreinfo
from vmi_agent.engine.linux.vmcoreinfo import VmcoreInfo
from vmi_agent.engine.memory import RamFile

TEXT = (b'OSRELEASE=6.1.0-56-amd64\nBUILD-ID=0123456789ABCDEF\nPAGESIZE=4096\n'
        b'SYMBOL(init_top_pgt)=ffffffffa5e0a000\nNUMBER(phys_base)=-16777216\n'
        b'NUMBER(pgtable_l5_enabled)=0\nKERNELOFFSET=24000000\n\0junk=1\n')


def test_parse_fields():
    info = VmcoreInfo.parse(TEXT)
    assert info.release == '6.1.0-56-amd64'
    assert info.build_id == '0123456789abcdef'
    assert info.kernel_offset == 0x24000000
    assert info.symbol('init_top_pgt') == 0xffffffffa5e0a000
    assert info.number('phys_base') == -16777216
    assert info.number('pgtable_l5_enabled') == 0
    assert 'junk' not in info.fields          # stops at NUL


def test_garbage_values_read_as_missing():
    info = VmcoreInfo.parse(b'OSRELEASE=x\nKERNELOFFSET=zz\nNUMBER(phys_base)=1e5\n'
                            b'BUILD-ID=not-hex\n\xff\xfe=1\n')
    assert info.kernel_offset is None
    assert info.number('phys_base') is None
    assert info.build_id is None


def test_text_without_osrelease_is_not_vmcoreinfo():
    assert VmcoreInfo.parse(b'KERNELOFFSET=1\n') is None
    assert VmcoreInfo.parse(b'\0' * 100) is None


def test_find_in_memory_skips_unaligned_and_incomplete_copies(tmp_path):
    guest = FakeGuest(size=4 << 20)
    guest.write(0x1001, b'OSRELEASE=decoy\nKERNELOFFSET=1\n')       # unaligned
    guest.write(0x2000, b'OSRELEASE=no-offset\n')                    # no KERNELOFFSET
    guest.write(0x300000, TEXT)
    with RamFile(guest.save(tmp_path / 'ram')) as mem:
        found = list(vmcoreinfo.find(mem))
    assert [i.release for i in found] == ['6.1.0-56-amd64']
    assert found[0].paddr == 0x300000


def test_find_is_bounded_in_candidates(tmp_path):
    guest = FakeGuest(size=4 << 20)
    for i in range(100):
        guest.write(0x200000 + i * 64, b'OSRELEASE=x\nKERNELOFFSET=%d\n' % i)
    with RamFile(guest.save(tmp_path / 'ram')) as mem:
        assert len(list(vmcoreinfo.find(mem))) == vmcoreinfo.MAX_CANDIDATES

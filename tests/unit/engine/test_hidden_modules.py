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

"""``hidden_modules`` on crafted memory: the three views, the rootkit shapes, the hostile ones.

:class:`ModuleGuest` extends a :class:`FakeKernel` with what the probe reads beyond the
``modules`` list: loadable modules in the module area (mapped by page tables, with their
own ``core_layout``), their ``module_kobject`` on ``module_kset``, and built-in modules'
kobjects (``mod == NULL``).  Tests then hide modules the ways rootkits do and break the
structures the ways a hostile guest could.
"""

import json
import mmap
import struct

from hypothesis import given, settings, strategies as hst
import pytest

from tests.unit.engine import fakekernel
from tests.unit.engine.fakekernel import FakeKernel
from vmi_agent.engine import probes
from vmi_agent.engine.linux.kernel import LinuxKernel
from vmi_agent.engine.linux.locate import locate
from vmi_agent.engine.linux.profile import Profile
from vmi_agent.engine.linux.symbols import SymbolTable
from vmi_agent.engine.memory import RamFile
from vmi_agent.engine.probes import hidden_modules

SYMBOLS = dict(fakekernel.SYMBOLS, module_kset=0x6000, _end=fakekernel.IMAGE_SIZE)
M_STATE, M_LIST, M_NAME, M_CORE, M_INIT, M_MKOBJ, M_SIZE = 0, 8, 24, 0x80, 0x90, 0xa0, 0x100
MK_MOD, KOBJ_ENTRY, KSET_LIST = 0x40, 8, 0
MODULE_AREA = 0xffffffffc0123000
MODULE_SPAN = 0x10000
MOD_PAGES = 2
POISON1, POISON2 = 0xdead000000000100, 0xdead000000000122


def _m(offset, size, kind='int', **extra):
    return dict(offset=offset, size=size, kind=kind, **extra)


def layouts():
    out = dict(fakekernel.LAYOUTS)
    module = dict(fakekernel.MODULE['members'])
    module['mkobj'] = _m(M_MKOBJ, 0x48, 'struct', type='module_kobject')
    out.update({
        'module': {'size': M_SIZE, 'members': module},
        'module_layout': {'size': 16, 'members': {'base': _m(0, 8, 'ptr'),
                                                  'size': _m(8, 4)}},
        'module_kobject': {'size': 0x48, 'members': {
            'kobj': _m(0, 0x40, 'struct', type='kobject'),
            'mod': _m(MK_MOD, 8, 'ptr', target='module')}},
        'kobject': {'size': 0x40, 'members': {
            'name': _m(0, 8, 'ptr'),
            'entry': _m(KOBJ_ENTRY, 16, 'struct', type='list_head')}},
        'kset': {'size': 0x60, 'members': {
            'list': _m(KSET_LIST, 16, 'struct', type='list_head')}},
    })
    return out


class ModuleGuest(FakeKernel):
    """A FakeKernel with sysfs and a module area (see the module docstring)."""

    def __init__(self):
        self.symbols = dict(SYMBOLS)
        super().__init__()
        self.kset = self.dm(self.alloc(0x60))
        self._link_head(self.kset + KSET_LIST)
        self.g.vu64(self.sym('module_kset'), self.kset)
        self._next_area = MODULE_AREA
        self.mods = {}

    def sym(self, name):
        return fakekernel.TEXT_LINK + self.shift + self.symbols.get(name, SYMBOLS[name])

    def pages(self, n):
        """Physical address of ``n`` fresh, page-aligned pages of the heap."""
        phys = (self.alloc(n * 4096 + 4096) + 4095) & ~4095
        return phys

    def lkm(self, name, state=0, listed=True, sysfs=True, offset=0x40):
        """A loadable module: its struct at ``offset`` in a fresh core allocation."""
        base = self._next_area
        self._next_area += MODULE_SPAN
        self.g.map(base, self.pages(MOD_PAGES), size=MOD_PAGES * 4096)
        mod = base + offset
        raw = name if isinstance(name, bytes) else name.encode()
        self.g.vwrite(mod + M_NAME, raw[:56].ljust(56, b'\0'))
        self.g.vwrite(mod + M_STATE, struct.pack('<I', state))
        self.g.vwrite(mod + M_CORE, struct.pack('<QI', base, MOD_PAGES * 4096))
        self.g.vu64(mod + M_MKOBJ + MK_MOD, mod)
        self.g.vu64(mod + M_LIST, mod + M_LIST)
        self.g.vu64(mod + M_LIST + 8, mod + M_LIST)
        if listed:
            self.list_add_tail(self.sym('modules'), mod + M_LIST)
        if sysfs:
            self.list_add_tail(self.kset + KSET_LIST, mod + M_MKOBJ + KOBJ_ENTRY)
        self.mods[name] = mod
        return mod

    def builtin(self):
        """A built-in module's kobject: in the slab, ``mod == NULL``."""
        mk = self.dm(self.alloc(0x48))
        self.list_add_tail(self.kset + KSET_LIST, mk + KOBJ_ENTRY)
        return mk

    # -- what rootkits do -------------------------------------------------------------
    def _bypass(self, node):
        nxt, prev = self.read_v64(node), self.read_v64(node + 8)
        self.g.vu64(prev, nxt)
        self.g.vu64(nxt + 8, prev)

    def list_del(self, node):
        """list_del(): neighbours bypass the node, whose links are poisoned."""
        self._bypass(node)
        self.g.vu64(node, POISON1)
        self.g.vu64(node + 8, POISON2)

    def list_del_init(self, node):
        self._bypass(node)
        self.g.vu64(node, node)
        self.g.vu64(node + 8, node)

    def unlink_only(self, node):
        """What a host-side tamper does: the node keeps its stale links."""
        self._bypass(node)

    def attach(self, tmp_path):
        memory = RamFile(self.g.save(tmp_path / 'ram'))
        symbols = SymbolTable([(fakekernel.TEXT_LINK + off, 'D', name)
                               for name, off in self.symbols.items()])
        profile = Profile('6.1.0-fake', fakekernel.BANNER, None, symbols, layouts(),
                          fakekernel.ENUMS)
        return LinuxKernel(memory, profile, locate(memory, profile))


@pytest.fixture
def guest():
    g = ModuleGuest()
    for name in ('qemu_fw_cfg', 'dummy', 'crc7'):
        g.lkm(name)
    g.builtin()
    g.builtin()
    return g


def run(guest, tmp_path):
    kernel = guest.attach(tmp_path)
    result = probes.run_probe(kernel, 'hidden_modules')
    assert result.error is None, result.error
    json.dumps(result.to_dict())                    # plain JSON types only
    return result


def views(result):
    return {r['name']: r['views'] for r in result.records}


def hidden(result):
    return {f.evidence['name']: f for f in result.findings if f.kind == 'hidden_module'}


ALL = ['list', 'memory', 'sysfs']


def test_clean_guest_three_views_agree(guest, tmp_path):
    result = run(guest, tmp_path)
    assert result.findings == []
    assert views(result) == {'qemu_fw_cfg': ALL, 'dummy': ALL, 'crc7': ALL}
    rec = {r['name']: r for r in result.records}['dummy']
    assert rec['address'] == '0x%x' % guest.mods['dummy']
    assert rec['state'] == 'live' and rec['size'] == MOD_PAGES * 4096


def test_list_del_of_itself_is_a_critical_finding(guest, tmp_path):
    """The classic rootkit: list_del(&THIS_MODULE->list), sysfs entry kept."""
    guest.list_del(guest.mods['dummy'] + M_LIST)
    result = run(guest, tmp_path)
    found = hidden(result)
    assert set(found) == {'dummy'}
    f = found['dummy']
    assert f.severity == 'critical'
    assert f.evidence['address'] == '0x%x' % guest.mods['dummy']
    assert f.evidence['views'] == ['memory', 'sysfs']
    assert f.evidence['list_next'] == '0x%x' % POISON1
    assert f.evidence['list_intact'] is True
    assert views(result)['dummy'] == ['memory', 'sysfs']
    assert views(result)['crc7'] == ALL


def test_hidden_from_list_and_sysfs_is_found_by_the_scan(guest, tmp_path):
    mod = guest.mods['crc7']
    guest.list_del(mod + M_LIST)
    guest.list_del_init(mod + M_MKOBJ + KOBJ_ENTRY)             # kobject_del
    found = hidden(run(guest, tmp_path))
    assert found['crc7'].evidence['views'] == ['memory']


@pytest.mark.parametrize('anchor', ['mkobj', 'list_del_init', 'list_del_rcu', 'stale'])
def test_each_scan_anchor_alone_finds_a_module(guest, tmp_path, anchor):
    """Off the list and out of sysfs, with only one self-reference left to find it by."""
    mod = guest.mods['dummy']
    guest.list_del_init(mod + M_MKOBJ + KOBJ_ENTRY)
    if anchor == 'mkobj':
        guest.unlink_only(mod + M_LIST)                         # stale links
    else:
        guest.g.vu64(mod + M_MKOBJ + MK_MOD, 0)                 # wiped back pointer
        if anchor == 'list_del_init':
            guest.list_del_init(mod + M_LIST)
        elif anchor == 'list_del_rcu':
            guest.unlink_only(mod + M_LIST)
            guest.g.vu64(mod + M_LIST + 8, POISON2)
        else:
            guest.unlink_only(mod + M_LIST)
    found = hidden(run(guest, tmp_path))
    if anchor == 'stale':
        assert found == {}          # documented: nothing left to anchor on
    else:
        assert found['dummy'].evidence['views'] == ['memory']


def test_host_side_unlink_keeps_stale_links(guest, tmp_path):
    mod = guest.mods['qemu_fw_cfg']
    guest.unlink_only(mod + M_LIST)
    f = hidden(run(guest, tmp_path))['qemu_fw_cfg']
    assert f.evidence['views'] == ['memory', 'sysfs']
    assert f.evidence['list_next'] == '0x%x' % (guest.mods['dummy'] + M_LIST)


@pytest.mark.parametrize('state,sysfs,reported', [
    (3, False, False),       # unformed: free_module() unlinks after sysfs is gone
    (2, False, False),       # going without sysfs: a failed load unlinking itself
    (2, True, True),         # going yet in sysfs and off the list: not the kernel's doing
    (3, True, False),        # unformed: even the kernel never lists it
    (1, False, True),        # coming: on the list from the start of a load
])
def test_modules_being_torn_down_are_recorded_not_reported(tmp_path, state, sysfs,
                                                           reported):
    g = ModuleGuest()
    g.lkm('live')
    mod = g.lkm('leaving', state=state, sysfs=sysfs)
    g.unlink_only(mod + M_LIST)
    g.g.vu64(mod + M_LIST + 8, POISON2)                         # list_del_rcu
    result = run(g, tmp_path)
    assert 'leaving' in views(result)
    assert ('leaving' in hidden(result)) is reported


def test_builtin_kobjects_are_not_modules(guest, tmp_path):
    mk = guest.builtin()
    guest.g.vu64(mk + MK_MOD, guest.mods['dummy'] + 8)        # mod not embedding mk
    result = run(guest, tmp_path)
    assert result.findings == [] and len(result.records) == 3


def test_a_copy_outside_its_own_layout_is_not_a_module(guest, tmp_path):
    """A stale or planted copy of a struct module elsewhere in the module area."""
    src = guest.g.vaddr_to_paddr(guest.mods['dummy'])
    copy = guest.lkm('decoy', listed=False, sysfs=False, offset=0x400)
    guest.g.vwrite(copy, bytes(guest.g.ram[src:src + M_SIZE]))
    guest.g.vu64(copy + M_MKOBJ + MK_MOD, copy)                 # self-consistent pointer
    result = run(guest, tmp_path)
    assert result.findings == [] and 'decoy' not in views(result)


@pytest.mark.parametrize('name', [b'', b'\xff\xfe\x00', b'bad name\x00', b'A' * 56,
                                  b'tab\tname\x00'])
def test_garbage_names_do_not_make_a_scan_candidate(guest, tmp_path, name):
    guest.lkm(name, listed=False, sysfs=False)
    result = run(guest, tmp_path)
    assert result.findings == [] and len(result.records) == 3


def test_garbage_name_of_a_sysfs_module_is_reported_leniently(guest, tmp_path):
    guest.lkm(b'\xff\xfe\x80rootkit', listed=False, sysfs=True)
    (f,) = [f for f in run(guest, tmp_path).findings if f.kind == 'hidden_module']
    assert f.evidence['views'] == ['sysfs']
    assert f.evidence['name'].endswith('rootkit')


@pytest.mark.parametrize('state', [4, 0xffffffff])
def test_invalid_state_rejects_a_scan_candidate(guest, tmp_path, state):
    guest.lkm('odd', state=state, listed=False, sysfs=False)
    assert run(guest, tmp_path).findings == []


@pytest.mark.parametrize('link', [0, 0x1000, 0x00007fff00000000, 0x8000000000000000])
def test_insane_list_links_reject_a_scan_candidate(guest, tmp_path, link):
    mod = guest.lkm('odd', listed=False, sysfs=False)
    guest.g.vu64(mod + M_LIST, link)
    assert run(guest, tmp_path).findings == []


# -- hostile structures -------------------------------------------------------------------

@pytest.mark.timeout(30)
def test_cyclic_kset_list_is_a_finding_and_the_scan_still_works(guest, tmp_path):
    dummy, crc7 = guest.mods['dummy'], guest.mods['crc7']
    guest.list_del(dummy + M_LIST)
    # crc7's kobject points back to dummy's instead of the kset head.
    guest.g.vu64(crc7 + M_MKOBJ + KOBJ_ENTRY, dummy + M_MKOBJ + KOBJ_ENTRY)
    result = run(guest, tmp_path)
    broken = [f for f in result.findings if f.kind == 'module_view_broken']
    assert [f.evidence['view'] for f in broken] == ['sysfs']
    assert broken[0].severity == 'high'
    assert 'memory' in hidden(result)['dummy'].evidence['views']


@pytest.mark.timeout(30)
@pytest.mark.parametrize('pointer', [0xffffc90000001000, 0x4141414141414141, 0])
def test_wild_kset_pointers(guest, tmp_path, pointer):
    guest.g.vu64(guest.mods['dummy'] + M_MKOBJ + KOBJ_ENTRY, pointer)
    result = run(guest, tmp_path)
    assert [f.evidence['view'] for f in result.findings] == ['sysfs']


def test_null_module_kset(guest, tmp_path):
    guest.g.vu64(guest.sym('module_kset'), 0)
    result = run(guest, tmp_path)
    assert [(f.kind, f.evidence['view']) for f in result.findings] == [
        ('module_view_broken', 'sysfs')]
    assert views(result)['dummy'] == ['list', 'memory']


@pytest.mark.timeout(30)
def test_cyclic_modules_list_still_reports_what_it_cannot_reach(guest, tmp_path):
    fw, dummy = guest.mods['qemu_fw_cfg'], guest.mods['dummy']
    guest.g.vu64(dummy + M_LIST, fw + M_LIST)                   # dummy -> fw -> dummy ...
    result = run(guest, tmp_path)
    kinds = [(f.kind, f.evidence.get('view'), f.evidence['name'] if 'name' in f.evidence
              else None) for f in result.findings]
    assert ('module_view_broken', 'list', None) in kinds
    crc7 = hidden(result)['crc7']
    assert crc7.evidence['list_intact'] is False


@pytest.mark.timeout(60)
def test_huge_pages_over_the_module_area_are_bounded(guest, tmp_path):
    """400 MiB of 2 MiB pages next to the modules (most of them beyond guest RAM)."""
    guest.g.map(MODULE_AREA + (2 << 20), 0, size=200 << 21, page=2 << 20)
    result = run(guest, tmp_path)
    assert [f.kind for f in result.findings] == ['module_scan_truncated']
    assert views(result)['dummy'] == ALL             # found before the budget ran out


@pytest.mark.timeout(60)
def test_page_tables_pointing_at_themselves_are_bounded(guest, tmp_path):
    """The module area's unused PD entries point to the PD itself: a table 'cycle'."""
    pd = guest.g.entry_slot(MODULE_AREA, 2) & ~4095
    for i in range(1, 512):
        guest.g.u64(pd + 8 * i, pd | 0x3)
    result = run(guest, tmp_path)
    assert [f.kind for f in result.findings] == ['module_scan_truncated']
    assert views(result)['dummy'] == ALL


@pytest.mark.timeout(60)
def test_pages_full_of_anchors_are_bounded(guest, tmp_path):
    """256 aliases of one frame full of LIST_POISON2: 131,072 would-be candidates."""
    frame = guest.pages(1)
    guest.g.write(frame, struct.pack('<Q', POISON2) * 512)
    for i in range(256):
        guest.g.map(MODULE_AREA + (1 << 20) + i * 4096, frame)
    result = run(guest, tmp_path)
    assert [f.kind for f in result.findings] == ['module_scan_truncated']
    assert 'candidate' in result.findings[0].summary
    assert views(result)['dummy'] == ALL


def test_page_tables_outside_ram_map_nothing(guest, tmp_path):
    pd = guest.g.entry_slot(MODULE_AREA, 2) & ~4095
    guest.g.u64(pd + 8 * 5, 0x7000000000 | 0x3)
    guest.g.u64(pd + 8 * 6, 0x7000000000 | 0x83)          # a 2 MiB page outside RAM
    result = run(guest, tmp_path)
    assert result.findings == []
    assert views(result)['dummy'] == ALL


def test_kernel_without_module_kset_has_two_views(guest, tmp_path):
    del guest.symbols['module_kset']
    guest.list_del(guest.mods['dummy'] + M_LIST)
    result = run(guest, tmp_path)
    assert hidden(result)['dummy'].evidence['views'] == ['memory']


# -- fuzzing ------------------------------------------------------------------------------

_KINDS = {'hidden_module', 'module_view_broken', 'module_scan_truncated'}


@pytest.fixture(scope='module')
def fuzz_image(tmp_path_factory):
    """One image, attached once; examples write through a shared mapping and undo."""
    g = ModuleGuest()
    for name in ('a', 'b', 'c'):
        g.lkm(name)
    g.lkm('h', listed=False)
    g.builtin()
    tmp = tmp_path_factory.mktemp('fuzz')
    kernel = g.attach(tmp)
    with open(tmp / 'ram', 'r+b') as f:
        ram = mmap.mmap(f.fileno(), 0)
    targets = [g.g.vaddr_to_paddr(m) for m in g.mods.values()]
    targets += [g.g.vaddr_to_paddr(g.kset), g.g.vaddr_to_paddr(g.sym('modules')),
                g.g.vaddr_to_paddr(g.sym('module_kset')), g.g.entry_slot(MODULE_AREA, 1)]
    yield kernel, ram, targets, g.mods
    ram.close()


@pytest.mark.timeout(600)
@settings(max_examples=150, deadline=None)
@given(writes=hst.lists(hst.tuples(hst.integers(0, 7), hst.integers(0, M_SIZE // 8 - 1),
                                   hst.one_of(hst.integers(0, 2 ** 64 - 1),
                                              hst.sampled_from(['self', 'mod', 'poison',
                                                                'zero', 'state']))),
                        min_size=1, max_size=10))
def test_fuzzed_module_structures_never_escape(fuzz_image, writes):
    """8-byte stores over modules, kset, list heads and a page table: findings, not crashes."""
    kernel, ram, targets, mods = fuzz_image
    addrs = list(mods.values())
    saved = []
    try:
        for which, word, value in writes:
            at = targets[which % len(targets)] + word * 8
            saved.append((at, ram[at:at + 8]))
            if value == 'self':
                value = addrs[which % len(addrs)] + word * 8
            elif value == 'mod':
                value = addrs[word % len(addrs)]
            elif value == 'poison':
                value = POISON2
            elif value == 'zero':
                value = 0
            elif value == 'state':
                value = word % 5
            ram[at:at + 8] = struct.pack('<Q', value)
        kernel.flush()                  # page-table entries may have changed
        result = probes.run_probe(kernel, 'hidden_modules')
        assert result.error is None, result.error
        assert {f.kind for f in result.findings} <= _KINDS
        assert len(result.records) <= 16
        json.dumps(result.to_dict())
    finally:
        for at, old in reversed(saved):
            ram[at:at + 8] = old


def test_bounds_are_sane():
    assert hidden_modules.MAX_SCAN_PAGES * 4096 <= 1 << 30
    assert hidden_modules.SCAN_START < MODULE_AREA < hidden_modules.SCAN_END

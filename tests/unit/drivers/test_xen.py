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

"""Call-sequence tests of the ``xen`` driver and its foreign-memory source.

The boundary replaced: the three Xen 4.17 C libraries, libxenctrl, libxenforeignmemory and
libxenstore (plus libc's ``free``), i.e. :class:`vmi_agent.drivers.xenlibs.XenLibs`.  The
Xen hypervisor cannot run on the test machines, so a :class:`Recorder` stands in for it:
it offers only the functions ``xenlibs`` declares, checks every argument against the
declared ``argtypes`` (what the real ctypes call would accept), records the calls, fills
the out-parameters and returns scripted values from a small model of the host (domains,
their RAM, holes in their p2m, altp2m access).  Everything above that boundary is the
real code.
"""

import ctypes
import uuid

from oslo_config import cfg
import pytest

from tests.unit.engine import fakekernel
from vmi_agent.conf import xen as xen_conf
from vmi_agent.drivers import base
from vmi_agent.drivers import xen
from vmi_agent.drivers import xenlibs
from vmi_agent.drivers import xenmemory
from vmi_agent.engine import probes
from vmi_agent.engine.errors import MemoryAccessError
from vmi_agent.engine.linux.kernel import LinuxKernel
from vmi_agent.engine.linux.locate import locate
from vmi_agent.engine.paging import AddressSpace

PAGE = xenlibs.PAGE_SIZE
XCH, FMEM, XSH = 0x1000, 0x2000, 0x3000
UUID3 = '3a3a3a3a-0000-4000-8000-000000000003'
UUID9 = '9b9b9b9b-0000-4000-8000-000000000009'
ENOENT, EINVAL, ESRCH, EBUSY = 2, 22, 3, 16


class Domain:
    """The model of one domain the Recorder answers about."""

    def __init__(self, domid, uuid_, pages, flags=xenlibs.XEN_DOMINF_hvm_guest, name=None,
                 holes=(), max_gpfn=None):
        self.domid, self.uuid, self.flags, self.name = domid, uuid_, flags, name
        self.ram = bytearray(pages * PAGE)
        for gfn in range(pages):
            self.ram[gfn * PAGE:gfn * PAGE + 8] = gfn.to_bytes(8, 'little')
        self.holes = set(holes)
        self.max_gpfn = pages - 1 if max_gpfn is None else max_gpfn
        self.tot_pages = pages - len(self.holes)
        self.altp2m = True
        self.access = {}        # (view, gfn) -> xenmem_access_t
        self.views = {0}        # altp2m views; 0 is the host p2m
        self.hidden = set()     # views VMFUNC and switch_to_view cannot select
        self.view = 0           # the view the vCPUs run in


class Recorder:
    """Stands for libxenctrl, libxenforeignmemory, libxenstore and free() (see above)."""

    def __init__(self, domains=()):
        self.domains = {d.domid: d for d in domains}
        self.calls = []
        self.err = 0
        self.fail = {}              # function name -> errno to fail it with
        self.map_null = set()       # chunk base gfns whose map call returns NULL
        self.mappings = {}          # address -> (buffer, pages)
        self.strings = {}           # address -> buffer handed out by xs_read
        self.ctrl = _Lib(self, xenlibs.CTRL_FUNCTIONS)
        self.fmem = _Lib(self, xenlibs.FMEM_FUNCTIONS)
        self.store = _Lib(self, xenlibs.STORE_FUNCTIONS)
        self.free = _Function(self, 'free', (None, [ctypes.c_void_p]), self.c_free)

    def errno(self):
        return self.err

    def names(self, prefix=''):
        return [name for name, _ in self.calls if name.startswith(prefix)]

    def _failed(self, name):
        if name in self.fail:
            self.err = self.fail[name]
            return True
        return False

    # -- libxenctrl ----------------------------------------------------------------------
    def xc_interface_open(self, logger, dlogger, flags):
        return None if self._failed('xc_interface_open') else XCH

    def xc_interface_close(self, xch):
        assert xch == XCH, 'closes the handle it opened'
        return 0

    def xc_domain_getinfolist(self, xch, first, count, infos):
        assert xch == XCH, 'uses the open interface'
        found = [d for i, d in sorted(self.domains.items()) if i >= first][:count]
        for slot, dom in zip(infos, found):
            slot.domain = dom.domid
            slot.flags = dom.flags
            slot.tot_pages = dom.tot_pages
            slot.handle[:] = uuid.UUID(dom.uuid).bytes
        return len(found)

    def _domain_call(self, name, domid):
        if self._failed(name):
            return None
        if domid not in self.domains:
            self.err = ESRCH
            return None
        return self.domains[domid]

    def xc_domain_pause(self, xch, domid):
        return 0 if self._domain_call('xc_domain_pause', domid) else -1

    def xc_domain_unpause(self, xch, domid):
        return 0 if self._domain_call('xc_domain_unpause', domid) else -1

    def xc_domain_maximum_gpfn(self, xch, domid, out):
        dom = self._domain_call('xc_domain_maximum_gpfn', domid)
        if dom is None:
            return -1
        out.value = dom.max_gpfn
        return 0

    def xc_altp2m_get_domain_state(self, xch, domid, out):
        dom = self._domain_call('xc_altp2m_get_domain_state', domid)
        if dom is None:
            return -1
        out.value = dom.altp2m
        return 0

    def xc_altp2m_set_domain_state(self, xch, domid, state):
        dom = self._domain_call('xc_altp2m_set_domain_state', domid)
        if dom is None:
            return -1
        dom.altp2m = bool(state)
        return 0

    def xc_altp2m_create_view(self, xch, domid, default, out):
        dom = self._domain_call('xc_altp2m_create_view', domid)
        if dom is None:
            return -1
        out.value = max(dom.views) + 1
        dom.views.add(out.value)
        return 0

    def _view_call(self, name, domid, view, error=EINVAL, refuse=lambda dom, view: False):
        dom = self._domain_call(name, domid)
        if dom is None:
            return None
        if view not in dom.views or refuse(dom, view):
            self.err = error
            return None
        return dom

    def xc_altp2m_destroy_view(self, xch, domid, view):
        dom = self._view_call('xc_altp2m_destroy_view', domid, view,
                              refuse=lambda dom, view: view == 0)
        if dom is None or dom.view == view:
            self.err = EBUSY if dom else self.err
            return -1
        dom.views.discard(view)
        dom.hidden.discard(view)
        return 0

    def xc_altp2m_switch_to_view(self, xch, domid, view):
        dom = self._view_call('xc_altp2m_switch_to_view', domid, view,
                              refuse=lambda dom, view: view in dom.hidden)
        if dom is None:
            return -1
        dom.view = view
        return 0

    def xc_altp2m_set_visibility(self, xch, domid, view, visible):
        dom = self._view_call('xc_altp2m_set_visibility', domid, view)
        if dom is None:
            return -1
        if visible:
            dom.hidden.discard(view)
        else:
            dom.hidden.add(view)
        return 0

    def guest_vmfunc_switch(self, domid, view):
        """VMFUNC leaf 0 in the guest: switch to ``view`` if it is a visible view."""
        dom = self.domains[domid]
        if view in dom.views and view not in dom.hidden:
            dom.view = view

    def xc_altp2m_set_mem_access_multi(self, xch, domid, view, access, gfns, nr):
        dom = self._domain_call('xc_altp2m_set_mem_access_multi', domid)
        if dom is None:
            return -1
        for i in range(nr):
            dom.access[(view, gfns[i])] = access[i]
        return 0

    def xc_altp2m_get_mem_access(self, xch, domid, view, gfn, out):
        dom = self._domain_call('xc_altp2m_get_mem_access', domid)
        if dom is None:
            return -1
        out.value = dom.access.get((view, gfn), xenlibs.XENMEM_access_rwx)
        return 0

    def guest_writes(self, domid, gfn):
        """What Xen does on a guest write to an rx2rw page of its view: it becomes rw."""
        dom = self.domains[domid]
        if dom.access.get((dom.view, gfn)) == xenlibs.XENMEM_access_rx2rw:
            dom.access[(dom.view, gfn)] = xenlibs.XENMEM_access_rw

    # -- libxenforeignmemory -------------------------------------------------------------
    def xenforeignmemory_open(self, logger, flags):
        return None if self._failed('xenforeignmemory_open') else FMEM

    def xenforeignmemory_close(self, fmem):
        assert fmem == FMEM, 'closes the handle it opened'
        assert not self.mappings, 'every mapping is unmapped before the handle closes'
        return 0

    def xenforeignmemory_map(self, fmem, domid, prot, pages, gfns, errs):
        assert fmem == FMEM and prot == xenlibs.PROT_READ, 'maps read-only'
        dom = self.domains.get(domid)
        if dom is None or gfns[0] in self.map_null:
            self.err = ESRCH if dom is None else EINVAL
            return None
        buf = ctypes.create_string_buffer(pages * PAGE)
        for i in range(pages):
            gfn = gfns[i]
            if gfn in dom.holes or gfn > dom.max_gpfn or (gfn + 1) * PAGE > len(dom.ram):
                errs[i] = -ENOENT
                continue
            errs[i] = 0
            ctypes.memmove(ctypes.addressof(buf) + i * PAGE,
                           bytes(dom.ram[gfn * PAGE:(gfn + 1) * PAGE]), PAGE)
        addr = ctypes.addressof(buf)
        self.mappings[addr] = (buf, pages)
        return addr

    def xenforeignmemory_unmap(self, fmem, addr, pages):
        assert addr in self.mappings, 'unmaps only what it mapped'
        assert self.mappings[addr][1] == pages, 'unmaps with the page count it mapped'
        del self.mappings[addr]
        return 0

    # -- libxenstore ---------------------------------------------------------------------
    def xs_open(self, flags):
        return None if self._failed('xs_open') else XSH

    def xs_close(self, xsh):
        assert xsh == XSH, 'closes the handle it opened'

    def xs_read(self, xsh, t, path, out):
        parts = path.decode().split('/')
        dom = self.domains.get(int(parts[3])) if len(parts) == 5 else None
        if dom is None or dom.name is None or parts[4] != 'name':
            self.err = ENOENT
            return None
        buf = ctypes.create_string_buffer(dom.name.encode())
        out.value = len(dom.name.encode())
        self.strings[ctypes.addressof(buf)] = buf
        return ctypes.addressof(buf)

    def c_free(self, ptr):
        assert ptr in self.strings, 'frees only what xs_read returned'
        del self.strings[ptr]


class _Function:
    def __init__(self, recorder, name, signature, handler=None):
        self.recorder, self.name = recorder, name
        self.restype, self.argtypes = signature
        self.handler = handler or getattr(recorder, name)

    def __call__(self, *args):
        assert len(args) == len(self.argtypes), '%s takes %d arguments' % (
            self.name, len(self.argtypes))
        for argtype, arg in zip(self.argtypes, args):
            argtype.from_param(arg)     # raises as the real call would on a bad argument
        self.recorder.calls.append((self.name, args))
        return self.handler(*args)


class _Lib:
    def __init__(self, recorder, functions):
        self._recorder, self._functions = recorder, functions

    def __getattr__(self, name):
        if name.startswith('_') or name not in self._functions:
            raise AttributeError('%s is not declared in xenlibs' % name)
        return _Function(self._recorder, name, self._functions[name])


def _conf(**overrides):
    conf = cfg.ConfigOpts()
    xen_conf.register_opts(conf)
    conf([])
    for key, value in overrides.items():
        conf.set_override(key, value, group='xen')
    return conf


def _host(**conf):
    rec = Recorder([
        Domain(0, '00000000-0000-0000-0000-000000000000', 4, flags=0, name='Domain-0'),
        Domain(3, UUID3, 64, name='instance-00000003', holes=range(40, 48)),
        Domain(5, UUID9, 4, flags=xenlibs.XEN_DOMINF_hvm_guest | xenlibs.XEN_DOMINF_dying),
        Domain(7, '77777777-0000-4000-8000-000000000007', 4, flags=0, name='pv'),
    ])
    return rec, xen.XenDriver(_conf(**conf), libs=rec)


def _open(chunk_pages=16, chunk_cache=2, **conf):
    rec, driver = _host(chunk_pages=chunk_pages, chunk_cache=chunk_cache, **conf)
    info = base.GuestInfo(uuid=UUID3, location=(3,), triggers=(('vmfunc', '3'),))
    return rec, driver, driver.open(info)


# -- opening the hypervisor -------------------------------------------------------------

def test_interface_open_failure_is_a_clear_driver_error():
    rec = Recorder()
    rec.fail['xc_interface_open'] = ENOENT
    with pytest.raises(base.DriverError) as err:
        xen.XenDriver(_conf(), libs=rec)
    assert 'cannot open the hypervisor interface (is this a Xen dom0?)' in str(err.value), \
        'the error tells an operator what is missing'
    assert rec.names() == ['xc_interface_open'], 'nothing else is tried without Xen'


def test_close_releases_every_handle():
    rec, driver, handle = _open()
    driver.list_guests()
    handle.memory.read(0, 8)
    driver.close()      # before the handle: the driver unmaps what handles left mapped
    assert rec.names()[-4:] == ['xs_close', 'xenforeignmemory_unmap', 'xenforeignmemory_close',
                                'xc_interface_close'], \
        'xenstore, the guest mappings, foreign memory and the interface are closed, in order'
    assert not rec.mappings and not rec.strings, 'no mapping and no xenstore string leaks'


# -- listing -----------------------------------------------------------------------------

def test_list_guests_reports_live_hvm_domains_with_handle_uuid_and_xenstore_name():
    rec, driver = _host()
    guests = driver.list_guests()
    assert guests == [base.GuestInfo(uuid=UUID3, name='instance-00000003',
                                     triggers=(('vmfunc', '3'),), location=(3,))], \
        'dom0, dying and PV domains are left out; the uuid is the domain handle'
    assert rec.names() == ['xc_interface_open', 'xc_domain_getinfolist', 'xs_open',
                           'xs_read', 'free'], 'one list call, one xenstore read, freed'
    assert rec.calls[1][1][1:3] == (0, xen.LIST_BATCH), 'the listing starts at domain 0'
    assert rec.calls[3][1][2] == b'/local/domain/3/name', 'the name is read from xenstore'


def test_list_guests_without_xenstore_has_no_names():
    rec, driver = _host()
    rec.fail['xs_open'] = ENOENT
    assert [g.name for g in driver.list_guests()] == [None], 'no xenstore, no name'
    driver.list_guests()
    assert rec.names('xs_').count('xs_open') == 1, 'xenstore is tried once, not per call'


def test_list_guests_pages_through_more_domains_than_one_call_returns():
    rec = Recorder([Domain(i, str(uuid.UUID(int=i)), 1) for i in range(1, 300)])
    driver = xen.XenDriver(_conf(), libs=rec)
    rec.fail['xs_open'] = ENOENT
    assert len(driver.list_guests()) == 299, 'every domain is listed'
    firsts = [args[1] for name, args in rec.calls if name == 'xc_domain_getinfolist']
    assert firsts == [0, 257], 'the second call starts after the last domain seen'


# -- memory ------------------------------------------------------------------------------

def test_open_then_read_maps_one_chunk_and_close_unmaps_it():
    rec, driver, handle = _open()
    assert handle.memory.read(5 * PAGE, 8) == (5).to_bytes(8, 'little'), \
        'the bytes of gfn 5 are read through the mapping'
    handle.close()
    assert rec.names() == ['xc_interface_open', 'xc_domain_getinfolist',
                           'xc_domain_maximum_gpfn', 'xc_altp2m_get_domain_state',
                           'xenforeignmemory_open', 'xenforeignmemory_map',
                           'xenforeignmemory_unmap'], 'open -> list -> map -> read -> unmap'
    _, args = rec.calls[5]
    assert args[1] == 3 and args[3] == 16 and list(args[4]) == list(range(16)), \
        'the chunk around the read is mapped: domain 3, gfns 0..15'
    assert rec.calls[1][1][1:3] == (3, 1), 'open looks up exactly that domain'
    assert handle.memory.path == 'xen:domain/3', 'engine caches key the memory by domain'


def test_read_across_chunks_joins_both():
    rec, driver, handle = _open()
    data = handle.memory.read(16 * PAGE - 4, 16)
    assert data[4:12] == (16).to_bytes(8, 'little'), 'the second chunk starts at gfn 16'
    assert rec.names('xenforeignmemory_map').count('xenforeignmemory_map') == 2, \
        'both chunks are mapped'


def test_lru_eviction_unmaps_the_least_recently_used_chunk():
    rec, driver, handle = _open(chunk_cache=2)
    mem = handle.memory
    mem.read(0, 1)
    mem.read(16 * PAGE, 1)
    mem.read(0, 1)                      # chunk 0 is now the most recent
    assert 'xenforeignmemory_unmap' not in rec.names(), 'nothing evicted within the bound'
    mem.read(32 * PAGE, 1)
    unmapped = [args[1] for name, args in rec.calls if name == 'xenforeignmemory_unmap']
    assert len(unmapped) == 1 and mem.mapped_chunks == [0, 32], \
        'the chunk at gfn 16 (least recently used) was unmapped'
    assert len(rec.mappings) == 2, 'at most chunk_cache chunks are mapped'


def test_read_of_an_unmappable_page_raises_memory_access_error():
    rec, driver, handle = _open()
    with pytest.raises(MemoryAccessError) as err:
        handle.memory.read(41 * PAGE, 8)
    assert 'gfn 0x29' in str(err.value), 'the error names the page Xen would not map'
    assert handle.memory.read(39 * PAGE, 8) == (39).to_bytes(8, 'little'), \
        'the mappable pages of the same chunk still read'


def test_failed_map_call_raises_memory_access_error_and_is_retried_later():
    rec, driver, handle = _open()
    rec.map_null.add(16)
    with pytest.raises(MemoryAccessError):
        handle.memory.read(17 * PAGE, 8)
    rec.map_null.clear()
    assert handle.memory.read(17 * PAGE, 8) == (17).to_bytes(8, 'little'), \
        'a failed map is not cached'


def test_reads_beyond_the_highest_gfn_or_too_large_are_refused_without_mapping():
    rec, driver, handle = _open()
    for paddr, size in ((64 * PAGE, 1), (0, xenmemory.MAX_READ + 1), (0, -1)):
        with pytest.raises(MemoryAccessError):
            handle.memory.read(paddr, size)
    assert 'xenforeignmemory_map' not in rec.names(), 'refused before any mapping'


def test_ranges_skip_the_hole_and_find_crosses_chunk_boundaries():
    rec, driver, handle = _open(chunk_cache=4)
    dom = rec.domains[3]
    dom.ram[16 * PAGE - 3:16 * PAGE + 3] = b'NEEDLE'
    dom.ram[50 * PAGE + 7:50 * PAGE + 13] = b'NEEDLE'
    mem = handle.memory
    assert mem.ranges() == [(0, 40 * PAGE), (48 * PAGE, 64 * PAGE)], 'the hole is not RAM'
    assert mem.size == 56 * PAGE, 'size counts mappable pages'
    assert list(mem.find(b'NEEDLE')) == [16 * PAGE - 3, 50 * PAGE + 7], \
        'a needle across two chunks is found once, and one past the hole too'
    assert mem.contains(39 * PAGE) and not mem.contains(41 * PAGE), 'contains follows ranges'
    assert len(rec.mappings) <= 4, 'probing stays within the cache bound'


def test_view_is_a_copy_that_survives_eviction():
    rec, driver, handle = _open(chunk_cache=1)
    view = handle.memory.view(2 * PAGE, 8)
    handle.memory.read(20 * PAGE, 1)       # evicts and unmaps chunk 0
    assert bytes(view) == (2).to_bytes(8, 'little'), 'the view does not point into an unmap'


def test_page_table_walker_takes_the_slow_path_over_foreign_memory():
    rec, driver, handle = _open()
    dom = rec.domains[3]
    # A 4-level table at gfn 1 mapping virtual 0 -> gfn 10 via tables at gfns 2, 3, 4.
    for table, target in ((1, 2), (2, 3), (3, 4), (4, 10)):
        dom.ram[table * PAGE:table * PAGE + 8] = ((target * PAGE) | 1).to_bytes(8, 'little')
    space = AddressSpace(handle.memory, 1 * PAGE)
    space.set_direct_map(0xffff888000000000)
    assert space.read(0xffff888000000000 + 5 * PAGE, 8) == (5).to_bytes(8, 'little'), \
        'the direct map reads through ForeignMemory.read'
    assert space.read(0x10, 4) == b'\x00' * 4 and space.translate(0) == 10 * PAGE, \
        'page-table walks read the tables from the foreign mappings'


def test_engine_probes_give_the_same_results_over_foreign_memory(tmp_path):
    fake = fakekernel.FakeKernel()
    fake.task(1, 'init')
    fake.task(42, 'sshd', uid=1000)
    fake.module('ext4', 0x4000)
    dom = Domain(3, UUID3, len(fake.g.ram) // PAGE)
    dom.ram[:] = fake.g.ram
    rec = Recorder([dom])
    driver = xen.XenDriver(_conf(chunk_pages=512, chunk_cache=4), libs=rec)
    handle = driver.open(base.GuestInfo(uuid=UUID3, location=(3,)))
    profile = fakekernel.profile()
    kernel = LinuxKernel(handle.memory, profile, locate(handle.memory, profile))
    names = ['pslist', 'modules']
    got = probes.run_probes(kernel, names)[0]
    want = probes.run_probes(fake.attach(tmp_path), names)[0]
    for name in names:
        assert got[name].error is None and got[name].records, '%s ran' % name
        assert got[name].records == want[name].records, \
            '%s reads the same over foreign mappings as over a RAM file' % name
    assert len(rec.mappings) <= 4, 'within the chunk cache bound'


# -- opening -----------------------------------------------------------------------------

def test_open_switches_altp2m_on_when_configured():
    rec, driver = _host(chunk_pages=16)
    rec.domains[3].altp2m = False
    driver.open(base.GuestInfo(uuid=UUID3, location=(3,)))
    assert rec.names('xc_altp2m') == ['xc_altp2m_get_domain_state',
                                      'xc_altp2m_set_domain_state'], 'altp2m is activated'
    assert rec.domains[3].altp2m, 'the domain now has altp2m'


def test_open_without_altp2m_support_still_opens():
    rec, driver = _host(chunk_pages=16)
    rec.fail['xc_altp2m_get_domain_state'] = 95
    handle = driver.open(base.GuestInfo(uuid=UUID3, location=(3,)))
    assert handle.memory.read(0, 8) == bytes(8), 'memory works without altp2m'


def test_open_refuses_a_reused_domain_id():
    rec, driver = _host()
    with pytest.raises(base.GuestVanished):
        driver.open(base.GuestInfo(uuid=UUID9, location=(3,)))
    with pytest.raises(base.GuestVanished):
        driver.open(base.GuestInfo(uuid=UUID3, location=(4,)))


def test_check_alive_notices_the_domain_going():
    rec, driver, handle = _open()
    handle.check_alive()
    rec.domains[3].flags |= xenlibs.XEN_DOMINF_shutdown
    with pytest.raises(base.GuestVanished):
        handle.check_alive()
    del rec.domains[3]
    with pytest.raises(base.GuestVanished):
        handle.check_alive()


# -- pause -------------------------------------------------------------------------------

def test_pause_unpauses_after_the_run():
    rec, driver, handle = _open()
    with handle.pause():
        handle.memory.read(0, 8)
    assert rec.names()[-3:] == ['xc_domain_pause', 'xenforeignmemory_map',
                                'xc_domain_unpause'], \
        'pause, map and read, unpause'


def test_pause_unpauses_even_when_the_run_raises():
    rec, driver, handle = _open()
    with pytest.raises(RuntimeError):
        with handle.pause():
            raise RuntimeError('probe failed')
    assert rec.names('xc_domain_')[-1] == 'xc_domain_unpause', 'the guest is never left paused'


def test_pause_of_a_vanished_domain_is_guest_vanished():
    rec, driver, handle = _open()
    del rec.domains[3]
    with pytest.raises(base.GuestVanished):
        with handle.pause():
            pass


# -- snapshot ----------------------------------------------------------------------------

SNAPSHOT_SETUP = ['xc_altp2m_get_domain_state', 'xc_domain_pause', 'xc_altp2m_create_view',
                  'xc_altp2m_set_mem_access_multi', 'xc_altp2m_switch_to_view',
                  'xc_altp2m_set_visibility', 'xc_domain_unpause']
TEARDOWN = ['xc_altp2m_set_visibility', 'xc_altp2m_switch_to_view', 'xc_altp2m_destroy_view',
            'xc_domain_unpause']


def _back_on_the_host_view(dom):
    return dom.view == 0 and dom.views == {0} and not dom.hidden


def _ctl_after_open(rec):
    return [n for n in rec.names()[5:] if n.startswith('xc_')]


def test_snapshot_installs_a_write_logging_view_and_removes_it():
    rec, driver, handle = _open()
    handle.memory.ranges()
    with handle.snapshot() as report:
        handle.memory.read(2 * PAGE, 8)
        handle.memory.read(50 * PAGE, PAGE + 8)
        assert rec.domains[3].view == 1 and rec.domains[3].hidden == {0}, \
            'the guest runs in the new view and cannot see the host view'
    calls = _ctl_after_open(rec)
    assert calls == SNAPSHOT_SETUP + [
        'xc_domain_pause', 'xc_altp2m_get_mem_access', 'xc_altp2m_get_mem_access',
        'xc_altp2m_get_mem_access'] + TEARDOWN, 'set up, read, check the read pages, tear down'
    assert _back_on_the_host_view(rec.domains[3]), 'the view is gone, the host view shown'
    setup = {n: a for n, a in rec.calls if n == 'xc_altp2m_set_mem_access_multi'}
    args = setup['xc_altp2m_set_mem_access_multi']
    assert list(args[4]) == list(range(40)) + list(range(48, 64)) and args[5] == 56, \
        'every RAM gfn, and no hole, is put in the view'
    assert set(args[3]) == {xenlibs.XENMEM_access_rx2rw}, 'as rx2rw: writes are logged'
    switches = [a[2] for n, a in rec.calls if n == 'xc_altp2m_switch_to_view']
    assert switches == [1, 0], 'the guest goes to the new view, then back to the host view'
    checked = [a[3] for n, a in rec.calls if n == 'xc_altp2m_get_mem_access']
    assert checked == [2, 50, 51], 'exactly the gfns read are checked'
    assert report.consistent and report.pages_read == 3, 'nothing was written'


def test_snapshot_reports_read_pages_the_guest_wrote():
    rec, driver, handle = _open()
    with handle.snapshot() as report:
        handle.memory.read(2 * PAGE, 8)
        rec.guest_writes(3, 2)
        rec.guest_writes(3, 30)        # written but not read: no matter
    assert report.written_while_read == [2], 'the read page the guest wrote is reported'
    assert not report.consistent


def test_snapshot_guest_cannot_leave_the_logging_view_by_vmfunc():
    rec, driver, handle = _open()
    with handle.snapshot() as report:
        rec.guest_vmfunc_switch(3, 0)
        rec.guest_writes(3, 2)
        handle.memory.read(2 * PAGE, 8)
    assert report.written_while_read == [2], 'the write is still logged'


def test_snapshot_restores_the_host_view_when_the_run_raises():
    rec, driver, handle = _open()
    with pytest.raises(RuntimeError):
        with handle.snapshot():
            raise RuntimeError('probe failed')
    assert _ctl_after_open(rec)[-4:] == TEARDOWN, 'view removed, guest running'
    assert _back_on_the_host_view(rec.domains[3]), 'nothing of the view is left'


def test_snapshot_setup_failure_destroys_the_view_and_unpauses():
    rec, driver, handle = _open()
    rec.fail['xc_altp2m_set_visibility'] = EINVAL
    with pytest.raises(base.DriverError):
        with handle.snapshot():
            pytest.fail('the body must not run without the view')
    assert _ctl_after_open(rec)[-4:] == TEARDOWN, 'undone in order'
    assert rec.domains[3].view == 0 and rec.domains[3].views == {0}, 'nothing is left behind'


def test_snapshot_without_altp2m_is_not_supported_and_does_not_pause():
    rec, driver, handle = _open(activate_altp2m=False)
    rec.domains[3].altp2m = False
    with pytest.raises(base.ConsistencyNotSupported) as err:
        with handle.snapshot():
            pass
    assert 'altp2m' in str(err.value), 'the reason names altp2m'
    assert 'xc_domain_pause' not in rec.names(), 'the guest was not paused'


def test_snapshot_teardown_failures_still_unpause():
    rec, driver, handle = _open()
    with handle.snapshot():
        rec.fail['xc_altp2m_get_mem_access'] = EINVAL
        rec.fail['xc_altp2m_destroy_view'] = EINVAL
        handle.memory.read(0, 8)
    assert rec.names()[-1] == 'xc_domain_unpause', 'the guest runs again whatever failed'


def test_driver_capabilities():
    assert xen.XenDriver.name == 'xen'
    assert set(xen.XenDriver.capabilities) == {'live', 'pause', 'snapshot', 'trigger:vmfunc',
                                               'trigger:rdtsc'}

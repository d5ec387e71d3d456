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

The boundary replaced: the four Xen 4.17 C libraries, libxenctrl, libxenforeignmemory,
libxenstore and libxenevtchn (plus libc's ``free`` and ``munmap``), i.e.
:class:`vmi_agent.drivers.xenlibs.XenLibs`.  The Xen hypervisor cannot run on the test
machines, so a :class:`Recorder` stands in for it: it offers only the functions
``xenlibs`` declares, checks every argument against the declared ``argtypes`` (what the
real ctypes call would accept), records the calls, fills the out-parameters and returns
scripted values from a small model of the host (domains, their RAM, holes in their p2m,
altp2m access).  For the copy-before-write snapshot it also plays Xen's side of the
vm_event monitor ring: :meth:`Recorder.guest_write` is a guest vCPU writing a page; if
the page's access in the vCPU's view forbids it, the vCPU is paused, a mem_access request
is put on the real shared ring page (the front end, as Xen's ``vm_event_put_request``
does) and the event channel (a real pipe) is signalled; the write lands only after the
response with ``VM_EVENT_FLAG_VCPU_PAUSED`` comes back and the access now allows it.
Foreign mappings point into the model's RAM itself, so a mapping sees writes live, as a
real one does.  Everything above that boundary is the real code, the driver's monitor
thread included.
"""

import ctypes
import logging
import os
import threading
import uuid

from oslo_config import cfg
import pytest

from tests.unit.engine import fakekernel
from vmi_agent.conf import xen as xen_conf
from vmi_agent.drivers import base
from vmi_agent.drivers import xen
from vmi_agent.drivers import xenevents
from vmi_agent.drivers import xenlibs
from vmi_agent.drivers import xenmemory
from vmi_agent.engine import probes
from vmi_agent.engine.errors import MemoryAccessError
from vmi_agent.engine.linux.kernel import LinuxKernel
from vmi_agent.engine.linux.locate import locate
from vmi_agent.engine.paging import AddressSpace

PAGE = xenlibs.PAGE_SIZE
XCH, FMEM, XSH, XCE = 0x1000, 0x2000, 0x3000, 0x4000
REMOTE_PORT, LOCAL_PORT = 5, 9
WAIT = 5.0      # generous: how long a paused vCPU waits for its response
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
        self.monitor = None     # the vm_event monitor ring, while enabled
        self._ram_c = None      # the RAM as a ctypes array: live foreign mappings

    def ram_address(self):
        if self._ram_c is None:
            self._ram_c = (ctypes.c_char * len(self.ram)).from_buffer(self.ram)
        return ctypes.addressof(self._ram_c)


class MonitorRing:
    """Xen's side of one domain's vm_event ring: the front end on the shared page."""

    def __init__(self, garbage=b'\xaa'):
        self.page = ctypes.create_string_buffer(garbage * xenevents.PAGE_SIZE)
        self.address = ctypes.addressof(self.page)
        self.req_prod_pvt = 0
        self.rsp_cons = 0
        self.responses = []         # every response Xen took, in order
        self.answered = threading.Condition()
        self.mapped = True

    def _slot(self, index):
        return self.address + ctypes.sizeof(xenevents.SharedRingHeader) \
            + (index % xenevents.ring_size()) * ctypes.sizeof(xenevents.VmEvent)

    @property
    def sring(self):
        return xenevents.SharedRingHeader.from_address(self.address)

    def put_request(self, req):
        """vm_event_put_request: copy to the next slot, then publish req_prod."""
        raw = bytes(req) if isinstance(req, xenevents.VmEvent) else req
        ctypes.memmove(self._slot(self.req_prod_pvt), raw, len(raw))
        self.req_prod_pvt = (self.req_prod_pvt + 1) & 0xffffffff
        self.sring.req_prod = self.req_prod_pvt

    def take_responses(self):
        """vm_event_resume: take every published response."""
        with self.answered:
            ahead = (self.sring.rsp_prod - self.rsp_cons) & 0xffffffff
            assert ahead <= xenevents.ring_size(), 'never more responses than slots'
            while self.rsp_cons != self.sring.rsp_prod:
                rsp = xenevents.VmEvent.from_buffer_copy(ctypes.string_at(
                    self._slot(self.rsp_cons), ctypes.sizeof(xenevents.VmEvent)))
                self.rsp_cons = (self.rsp_cons + 1) & 0xffffffff
                self.responses.append(rsp)
            self.answered.notify_all()

    def wait_for(self, count):
        with self.answered:
            return self.answered.wait_for(lambda: len(self.responses) >= count, WAIT)


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
        self.disabled = None        # the last monitor ring disabled
        self.channel = None         # (read fd, write fd) of the event channel, when open
        self.ctrl = _Lib(self, xenlibs.CTRL_FUNCTIONS)
        self.fmem = _Lib(self, xenlibs.FMEM_FUNCTIONS)
        self.store = _Lib(self, xenlibs.STORE_FUNCTIONS)
        self.evtchn = _Lib(self, xenlibs.EVTCHN_FUNCTIONS)
        self.free = _Function(self, 'free', (None, [ctypes.c_void_p]), self.c_free)
        self.munmap = _Function(self, 'munmap', xenlibs.MUNMAP_SIGNATURE, self.c_munmap)

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

    def xc_altp2m_set_mem_access(self, xch, domid, view, gfn, access):
        dom = self._domain_call('xc_altp2m_set_mem_access', domid)
        if dom is None:
            return -1
        dom.access[(view, gfn)] = access
        return 0

    def xc_monitor_enable(self, xch, domid, port):
        dom = self._domain_call('xc_monitor_enable', domid)
        if dom is None:
            return None
        if dom.monitor is not None:
            self.err = EBUSY
            return None
        dom.monitor = MonitorRing()
        port.value = REMOTE_PORT
        return dom.monitor.address

    def xc_monitor_resume(self, xch, domid):
        dom = self._domain_call('xc_monitor_resume', domid)
        if dom is None or dom.monitor is None:
            return -1
        dom.monitor.take_responses()
        return 0

    def xc_monitor_disable(self, xch, domid):
        dom = self._domain_call('xc_monitor_disable', domid)
        if dom is None or dom.monitor is None:
            return -1
        self.disabled = dom.monitor       # responses not yet taken are lost, as on Xen
        dom.monitor = None
        return 0

    def guest_write(self, domid, gfn, data, offset=0, vcpu=0):
        """A vCPU of ``domid`` writes ``data`` at ``offset`` in page ``gfn``, as on Xen.

        The write lands at once if the page's access in the vCPU's view allows it (rx2rw
        pages become rw, without a listener other restrictions are cleared).  Otherwise
        the vCPU pauses on a mem_access request on the monitor ring and the write is
        tried again after the response resumes it; an emulate response lets it land.
        """
        dom = self.domains[domid]
        for _ in range(3):
            access = dom.access.get((dom.view, gfn), xenlibs.XENMEM_access_rwx) \
                if dom.view else xenlibs.XENMEM_access_rwx
            if access == xenlibs.XENMEM_access_rx2rw:
                dom.access[(dom.view, gfn)] = xenlibs.XENMEM_access_rw
            elif access in (xenlibs.XENMEM_access_rx, xenlibs.XENMEM_access_r) \
                    and dom.monitor is None:
                dom.access[(dom.view, gfn)] = xenlibs.XENMEM_access_rwx
            elif access in (xenlibs.XENMEM_access_rx, xenlibs.XENMEM_access_r):
                rsp = self.fault(domid, gfn, offset, vcpu)
                if not rsp.flags & xenevents.VM_EVENT_FLAG_EMULATE:
                    continue
            dom.ram[gfn * PAGE + offset:gfn * PAGE + offset + len(data)] = data
            return
        raise AssertionError('the write to gfn %d never landed' % gfn)

    def fault(self, domid, gfn, offset=0, vcpu=0, access=xenevents.MEM_ACCESS_W):
        """Pause the vCPU on a mem_access request; return the response that resumed it."""
        req = xenevents.VmEvent(version=xenevents.VM_EVENT_INTERFACE_VERSION,
                                flags=xenevents.VM_EVENT_FLAG_VCPU_PAUSED
                                | xenevents.VM_EVENT_FLAG_ALTERNATE_P2M,
                                reason=xenevents.VM_EVENT_REASON_MEM_ACCESS, vcpu_id=vcpu)
        req.altp2m_idx = self.domains[domid].view
        req.u.mem_access.gfn, req.u.mem_access.offset = gfn, offset
        req.u.mem_access.flags = access
        return self.request(domid, req)

    def request(self, domid, req):
        """Put ``req`` (a VmEvent or raw bytes) on the ring, signal, wait for the answer."""
        ring = self.domains[domid].monitor
        assert ring is not None, 'a request needs the monitor ring enabled'
        seen = len(ring.responses)
        ring.put_request(req)
        os.write(self.channel[1], b'e')
        assert ring.wait_for(seen + 1), 'the paused vCPU got its response'
        return ring.responses[seen]

    # -- libxenevtchn --------------------------------------------------------------------
    def xenevtchn_open(self, logger, flags):
        if self._failed('xenevtchn_open'):
            return None
        self.channel = os.pipe()
        os.set_blocking(self.channel[0], False)
        return XCE

    def xenevtchn_fd(self, xce):
        assert xce == XCE, 'asks the open handle'
        return self.channel[0]

    def xenevtchn_bind_interdomain(self, xce, domid, remote):
        if self._failed('xenevtchn_bind_interdomain'):
            return -1
        assert remote == REMOTE_PORT, 'binds the port xc_monitor_enable gave'
        return LOCAL_PORT

    def xenevtchn_pending(self, xce):
        try:
            os.read(self.channel[0], 1)
        except BlockingIOError:
            self.err = 11
            return -1
        return LOCAL_PORT

    def xenevtchn_unmask(self, xce, port):
        assert port == LOCAL_PORT, 'unmasks the pending port'
        return 0

    def xenevtchn_notify(self, xce, port):
        assert port == LOCAL_PORT, 'notifies through the bound port'
        for dom in self.domains.values():
            if dom.monitor is not None:
                dom.monitor.take_responses()
        return 0

    def xenevtchn_unbind(self, xce, port):
        assert port == LOCAL_PORT, 'unbinds the bound port'
        return 0

    def xenevtchn_close(self, xce):
        assert xce == XCE, 'closes the handle it opened'
        for fd in self.channel:
            os.close(fd)
        self.channel = None
        return 0

    def c_munmap(self, addr, length):
        assert length == xenevents.PAGE_SIZE, 'unmaps the one ring page'
        assert self.disabled is not None and addr == self.disabled.address, \
            'unmaps the ring page after disabling the monitor'
        self.disabled.mapped = False
        return 0

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
        for i in range(pages):
            gfn = gfns[i]
            bad = gfn in dom.holes or gfn > dom.max_gpfn or (gfn + 1) * PAGE > len(dom.ram)
            errs[i] = -ENOENT if bad else 0
        base = gfns[0]
        addr = dom.ram_address() + base * PAGE
        if (base + pages) * PAGE > len(dom.ram) or addr in self.mappings:
            # Past the end of the model's RAM: a private buffer (unmapped pages only).
            buf = ctypes.create_string_buffer(pages * PAGE)
            addr = ctypes.addressof(buf)
            self.mappings[addr] = (buf, pages)
            return addr
        self.mappings[addr] = (None, pages)
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


# -- snapshot, detect-only mode ([xen] snapshot_copy = false, or no monitor ring) -------

SNAPSHOT_SETUP = ['xc_altp2m_get_domain_state', 'xc_domain_pause', 'xc_altp2m_create_view',
                  'xc_altp2m_set_mem_access_multi', 'xc_altp2m_switch_to_view',
                  'xc_altp2m_set_visibility', 'xc_domain_unpause']
TEARDOWN = ['xc_altp2m_set_visibility', 'xc_altp2m_switch_to_view', 'xc_altp2m_destroy_view',
            'xc_domain_unpause']


def _back_on_the_host_view(dom):
    return dom.view == 0 and dom.views == {0} and not dom.hidden


def _ctl_after_open(rec):
    return [n for n in rec.names()[5:] if n.startswith('xc_')]


def test_detect_snapshot_installs_a_write_logging_view_and_removes_it():
    rec, driver, handle = _open(snapshot_copy=False)
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
    assert report.mode == xen.DETECT, 'the report says writes were only detected'


def test_detect_snapshot_reports_read_pages_the_guest_wrote():
    rec, driver, handle = _open(snapshot_copy=False)
    with handle.snapshot() as report:
        handle.memory.read(2 * PAGE, 8)
        rec.guest_writes(3, 2)
        rec.guest_writes(3, 30)        # written but not read: no matter
    assert report.written_while_read == [2], 'the read page the guest wrote is reported'
    assert not report.consistent


def test_detect_snapshot_guest_cannot_leave_the_logging_view_by_vmfunc():
    rec, driver, handle = _open(snapshot_copy=False)
    with handle.snapshot() as report:
        rec.guest_vmfunc_switch(3, 0)
        rec.guest_writes(3, 2)
        handle.memory.read(2 * PAGE, 8)
    assert report.written_while_read == [2], 'the write is still logged'


def test_detect_snapshot_restores_the_host_view_when_the_run_raises():
    rec, driver, handle = _open(snapshot_copy=False)
    with pytest.raises(RuntimeError):
        with handle.snapshot():
            raise RuntimeError('probe failed')
    assert _ctl_after_open(rec)[-4:] == TEARDOWN, 'view removed, guest running'
    assert _back_on_the_host_view(rec.domains[3]), 'nothing of the view is left'


def test_detect_snapshot_setup_failure_destroys_the_view_and_unpauses():
    rec, driver, handle = _open(snapshot_copy=False)
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


def test_detect_snapshot_teardown_failures_still_unpause():
    rec, driver, handle = _open(snapshot_copy=False)
    with handle.snapshot():
        rec.fail['xc_altp2m_get_mem_access'] = EINVAL
        rec.fail['xc_altp2m_destroy_view'] = EINVAL
        handle.memory.read(0, 8)
    assert rec.names()[-1] == 'xc_domain_unpause', 'the guest runs again whatever failed'


# -- snapshot, copy-before-write mode (the vm_event monitor ring) ------------------------

COPY_SETUP = ['xc_altp2m_get_domain_state', 'xc_domain_pause', 'xc_altp2m_create_view',
              'xenevtchn_open', 'xc_monitor_enable', 'xenevtchn_bind_interdomain',
              'xenevtchn_fd', 'xc_altp2m_set_mem_access_multi', 'xc_altp2m_switch_to_view',
              'xc_altp2m_set_visibility', 'xc_domain_unpause']
COPY_TEARDOWN = ['xc_domain_pause', 'xc_altp2m_set_visibility', 'xc_altp2m_switch_to_view',
                 'xc_monitor_resume', 'xc_monitor_disable', 'munmap', 'xenevtchn_unbind',
                 'xenevtchn_close', 'xc_altp2m_destroy_view', 'xc_domain_unpause']
#: What the monitor thread calls while it serves events (timing-dependent in number).
SERVICE_CALLS = {'xenevtchn_pending', 'xenevtchn_unmask', 'xenevtchn_notify'}


def _after_open(rec, skip=()):
    """The calls after opening the guest, without its memory mappings and ``skip``."""
    return [n for n in rec.names()[5:]
            if not n.startswith('xenforeignmemory_') and n not in skip]


def _all_released(rec, dom):
    """Ring disabled and unmapped, channel closed, host view back, service thread gone."""
    threads = [t for t in threading.enumerate() if t.name.startswith('xen-monitor-')]
    return (dom.monitor is None and rec.disabled is not None and not rec.disabled.mapped
            and rec.channel is None and _back_on_the_host_view(dom) and not threads)


def _old(gfn):
    return gfn.to_bytes(8, 'little')


def test_copy_snapshot_call_sequence_sets_up_the_ring_and_releases_everything():
    rec, driver, handle = _open()
    handle.memory.ranges()
    with handle.snapshot() as report:
        dom = rec.domains[3]
        assert dom.view == 1 and dom.hidden == {0}, 'the guest runs in the hidden-host view'
        sring = dom.monitor.sring
        assert (sring.req_prod, sring.req_event, sring.rsp_prod, sring.rsp_event) == \
            (0, 1, 0, 1), 'the garbage-filled ring page was initialised (SHARED_RING_INIT)'
        assert handle.memory.overlay_pages == 0, 'the overlay is on and empty'
    assert _after_open(rec) == COPY_SETUP + COPY_TEARDOWN, \
        'pause, view, ring, channel, restrict, switch, unpause ... pause, undo all, unpause'
    multi = [a for n, a in rec.calls if n == 'xc_altp2m_set_mem_access_multi'][0]
    assert set(multi[3]) == {xenlibs.XENMEM_access_rx} and multi[5] == 56, \
        'every RAM page of the view is r-x: guest writes raise mem_access events'
    assert report.mode == xen.COPY and report.consistent, 'copy mode, nothing written'
    assert _all_released(rec, rec.domains[3]), 'ring disabled and unmapped, channel closed'
    assert handle.memory.preserve(2) == xenmemory.OFF, 'the overlay was dropped'


def test_the_view_is_restricted_in_batches_with_the_same_access(monkeypatch):
    monkeypatch.setattr(xen, 'ACCESS_BATCH', 20)
    rec, driver, handle = _open()
    with handle.snapshot():
        pass
    batches = [a for n, a in rec.calls if n == 'xc_altp2m_set_mem_access_multi']
    assert [b[5] for b in batches] == [20, 20, 16], '56 RAM pages in batches of 20'
    assert all(set(b[3]) == {xenlibs.XENMEM_access_rx} for b in batches), \
        'every batch is r-x'
    assert [g for b in batches for g in b[4]] == list(range(40)) + list(range(48, 64)), \
        'every RAM gfn once, in order'


def test_write_event_copies_the_page_before_the_write_lands_and_reads_see_the_copy():
    rec, driver, handle = _open()
    dom = rec.domains[3]
    with handle.snapshot() as report:
        assert handle.memory.read(5 * PAGE, 8) == _old(5), 'read before the write'
        rec.guest_write(3, 5, b'NEWNEWNE')
        rec.guest_write(3, 2, b'CHANGED!', offset=PAGE - 8)
        assert bytes(dom.ram[5 * PAGE:5 * PAGE + 8]) == b'NEWNEWNE', 'the write landed live'
        assert handle.memory.read(5 * PAGE, 8) == _old(5), \
            'the run still reads the page as it was before the write'
        across = handle.memory.read(3 * PAGE - 8, 16)
        assert across == bytes(8) + _old(3), \
            'a read across a copied and a live page joins the copy and the live bytes'
    names = rec.names()
    lift = [i for i, (n, a) in enumerate(rec.calls)
            if n == 'xc_altp2m_set_mem_access' and a[3] == 5][0]
    notify = names.index('xenevtchn_notify', lift)
    assert lift < notify, 'the page is lifted (after its copy) before the vCPU is resumed'
    assert [a[4] for n, a in rec.calls if n == 'xc_altp2m_set_mem_access'] == \
        [xenlibs.XENMEM_access_rwx] * 2, 'each written page becomes rwx in the view'
    rsp = rec.disabled.responses[0]
    assert rsp.flags == xenevents.VM_EVENT_FLAG_VCPU_PAUSED and \
        rsp.version == xenevents.VM_EVENT_INTERFACE_VERSION and rsp.u.mem_access.gfn == 5, \
        'the response resumes the vCPU and asks nothing else'
    assert report.pages_copied == 2 and report.consistent and report.events == 2, \
        'two pages copied, the run saw no write'


def test_each_page_is_copied_once_even_when_two_vcpus_fault_on_it():
    rec, driver, handle = _open()
    with handle.snapshot() as report:
        rec.guest_write(3, 7, b'FIRST...', vcpu=0)
        rec.guest_write(3, 7, b'SECOND..', vcpu=0)      # now rwx: no event
        rsp = rec.fault(3, 7, vcpu=1)       # a second vCPU that faulted before the lift
        assert rsp.flags & xenevents.VM_EVENT_FLAG_VCPU_PAUSED, 'it is resumed too'
        assert handle.memory.read(7 * PAGE, 8) == _old(7), \
            'the copy is the content before the first write, not re-taken'
    assert report.pages_copied == 1 and report.events == 2, 'one copy for two events'
    assert len(rec.disabled.responses) == 2, 'every event was answered'


def test_overlay_bound_stops_copying_and_reports_the_uncopied_pages_read():
    rec, driver, handle = _open(snapshot_max_pages=2)
    with handle.snapshot() as report:
        for gfn in (2, 3, 4, 5):
            rec.guest_write(3, gfn, b'WRITTEN!')
            assert handle.memory.overlay_pages <= 2, 'never more than snapshot_max_pages'
        assert handle.memory.read(3 * PAGE, 8) == _old(3), 'copied pages read old'
        assert handle.memory.read(4 * PAGE, 8) == b'WRITTEN!', 'past the bound: live'
    assert report.pages_copied == 2 and report.pages_lost == 2, 'two kept, two let through'
    assert report.written_while_read == [4], 'the uncopied page that was read is reported'
    assert not report.consistent


def test_more_writes_than_ring_slots_go_round_the_ring():
    rec, driver, handle = _open(chunk_cache=4)
    gfns = list(range(1, 3 * xenevents.ring_size() + 2))
    with handle.snapshot() as report:
        for gfn in gfns:
            rec.guest_write(3, gfn, b'OVERLAY!', vcpu=gfn % 4)
        assert [handle.memory.read(g * PAGE, 8) for g in gfns] == [_old(g) for g in gfns], \
            'every page reads as it was'
    assert [r.vcpu_id for r in rec.disabled.responses] == [g % 4 for g in gfns], \
        'the responses came back in order, each to its vCPU'
    assert report.pages_copied == len(gfns) and report.consistent


def test_back_ring_indices_wrap_at_32_bits():
    page = MonitorRing(garbage=b'\0')
    start = 0xffffffff - 4
    page.req_prod_pvt = page.rsp_cons = start
    page.sring.req_prod = page.sring.rsp_prod = start
    ring = xenevents.BackRing(page.address, index=start)
    for vcpu in range(20):
        page.put_request(xenevents.VmEvent(version=7, vcpu_id=vcpu, flags=1))
        assert ring.unconsumed_requests() == 1, 'one request outstanding, across the wrap'
        ring.put_response(xenevents.response_to(ring.get_request()))
        ring.push_responses()
        page.take_responses()
        assert not ring.final_check(), 'nothing left after each answer'
    assert [r.vcpu_id for r in page.responses] == list(range(20)), 'all answered in order'
    assert ring.req_cons == (start + 20) & 0xffffffff == page.sring.rsp_prod, \
        'the indices wrapped past 2**32'


def test_back_ring_refuses_a_producer_index_beyond_the_ring():
    page = MonitorRing(garbage=b'\0')
    ring = xenevents.BackRing(page.address)
    page.sring.req_prod = xenevents.ring_size() + 1
    with pytest.raises(xenevents.CorruptRing):
        ring.unconsumed_requests()


def _raw_request(**fields):
    req = xenevents.VmEvent(version=xenevents.VM_EVENT_INTERFACE_VERSION,
                            flags=xenevents.VM_EVENT_FLAG_VCPU_PAUSED,
                            reason=xenevents.VM_EVENT_REASON_MEM_ACCESS)
    req.u.mem_access.flags = fields.pop('access', xenevents.MEM_ACCESS_W)
    req.u.mem_access.gfn = fields.pop('gfn', 2)
    for key, value in fields.items():
        setattr(req, key, value)
    return req


def test_malformed_and_unknown_events_are_answered_and_ignored():
    rec, driver, handle = _open()
    bad = [b'\xff' * ctypes.sizeof(xenevents.VmEvent),      # garbage
           _raw_request(version=6),                         # another interface
           _raw_request(reason=4),                          # a control-register write
           _raw_request(access=xenevents.MEM_ACCESS_R),     # not a write
           _raw_request(gfn=1 << 60),                       # beyond the domain
           _raw_request(gfn=41),                            # a hole, not RAM
           _raw_request(flags=xenevents.VM_EVENT_FLAG_VCPU_PAUSED
                        | xenevents.VM_EVENT_FLAG_ALTERNATE_P2M, altp2m_idx=9)]
    with handle.snapshot() as report:
        for req in bad:
            rsp = rec.request(3, req)
            assert rsp.flags == xenevents.VM_EVENT_FLAG_VCPU_PAUSED and rsp.version == 7, \
                'answered with our version, only resuming the vCPU'
        rec.guest_write(3, 2, b'AFTERBAD')
        assert handle.memory.read(2 * PAGE, 8) == _old(2), 'the thread still serves writes'
    assert report.events_ignored == len(bad) and report.pages_copied == 1
    assert [a[3] for n, a in rec.calls if n == 'xc_altp2m_set_mem_access'] == [2], \
        'no page was lifted for an ignored event'


def test_an_exception_while_handling_an_event_is_answered_and_the_thread_goes_on(
        monkeypatch, caplog):
    rec, driver, handle = _open()
    real = handle.memory.preserve
    calls = []

    def preserve_once_broken(gfn):
        calls.append(gfn)
        if len(calls) == 1:
            raise RuntimeError('broken copy')
        return real(gfn)

    monkeypatch.setattr(handle.memory, 'preserve', preserve_once_broken)
    with handle.snapshot() as report:
        rsp = rec.fault(3, 2)
        assert rsp.flags & xenevents.VM_EVENT_FLAG_VCPU_PAUSED, 'answered despite the error'
        rec.guest_write(3, 2, b'RETRIED!')
        assert handle.memory.read(2 * PAGE, 8) == _old(2), 'the retried fault was copied'
    assert 'a monitor request could not be handled' in caplog.text, 'the error is logged'
    assert report.pages_copied == 1


def test_a_failed_lift_makes_xen_emulate_the_write_and_keeps_the_copy():
    rec, driver, handle = _open()
    rec.fail['xc_altp2m_set_mem_access'] = EINVAL
    with handle.snapshot() as report:
        rec.guest_write(3, 2, b'EMULATED')
        assert bytes(rec.domains[3].ram[2 * PAGE:2 * PAGE + 8]) == b'EMULATED', \
            'the vCPU moved on: Xen emulated the write'
        assert handle.memory.read(2 * PAGE, 8) == _old(2), 'the copy is still read'
    flags = rec.disabled.responses[0].flags
    assert flags == xenevents.VM_EVENT_FLAG_VCPU_PAUSED | xenevents.VM_EVENT_FLAG_EMULATE, \
        'the response asks Xen to emulate the faulting write'
    assert report.consistent


def test_copy_snapshot_tears_everything_down_when_the_run_raises():
    rec, driver, handle = _open()
    with pytest.raises(RuntimeError):
        with handle.snapshot():
            rec.guest_write(3, 2, b'WRITTEN!')
            raise RuntimeError('probe failed')
    assert _after_open(rec, SERVICE_CALLS)[-len(COPY_TEARDOWN):] == COPY_TEARDOWN, \
        'the whole teardown ran'
    assert _all_released(rec, rec.domains[3]), 'nothing of the snapshot is left'
    assert handle.memory.overlay_pages == 0, 'the overlay is dropped'


def test_a_request_left_on_the_ring_is_answered_before_the_monitor_is_disabled():
    rec, driver, handle = _open()
    with handle.snapshot():
        rec.domains[3].monitor.put_request(_raw_request(gfn=3, vcpu_id=1))    # no signal
    responses = rec.disabled.responses
    assert len(responses) == 1 and responses[0].vcpu_id == 1 and \
        responses[0].flags & xenevents.VM_EVENT_FLAG_VCPU_PAUSED, \
        'the vCPU paused on it is resumed: disabling the ring would not resume it'


def test_copy_snapshot_setup_failure_releases_the_monitor_and_unpauses():
    rec, driver, handle = _open()
    rec.fail['xc_altp2m_set_visibility'] = EINVAL
    with pytest.raises(base.DriverError):
        with handle.snapshot():
            pytest.fail('the body must not run without the view')
    assert _after_open(rec)[-7:] == ['xc_monitor_resume', 'xc_monitor_disable', 'munmap',
                                     'xenevtchn_unbind', 'xenevtchn_close',
                                     'xc_altp2m_destroy_view', 'xc_domain_unpause'], \
        'ring, channel and view undone, then the guest runs'
    assert _all_released(rec, rec.domains[3]) and handle.memory.overlay_pages == 0


def test_corrupt_ring_stops_the_service_but_not_the_teardown():
    rec, driver, handle = _open()
    with handle.snapshot() as report:
        rec.domains[3].monitor.sring.req_prod = 1000    # Xen would never: 8 slots
        os.write(rec.channel[1], b'e')
    assert report.monitor_error and 'req_prod 1000' in report.monitor_error, \
        'the report says why the ring was given up'
    assert _all_released(rec, rec.domains[3]), 'the teardown still ran'
    assert rec.names()[-1] == 'xc_domain_unpause', 'and the guest runs'


def test_without_libxenevtchn_the_snapshot_falls_back_to_detecting_writes(caplog):
    rec, driver, handle = _open()
    rec.evtchn = None
    rec.evtchn_error = 'cannot load libxenevtchn.so.1'
    with caplog.at_level(logging.WARNING):
        with handle.snapshot() as report:
            rec.guest_writes(3, 2)
            handle.memory.read(2 * PAGE, 8)
    assert report.mode == xen.DETECT and report.written_while_read == [2], \
        'the writes are detected as before'
    assert 'no copy-before-write snapshot, libxenevtchn is not loaded' in caplog.text, \
        'the log says why'
    assert 'xc_monitor_enable' not in rec.names(), 'no ring without the event channel'


def test_a_failed_monitor_enable_falls_back_and_closes_the_event_channel(caplog):
    rec, driver, handle = _open()
    rec.domains[3].monitor = MonitorRing()      # another monitor is attached
    with caplog.at_level(logging.WARNING):
        with handle.snapshot() as report:
            pass
    assert report.mode == xen.DETECT, 'detect-only'
    assert 'xc_monitor_enable failed (errno 16; another monitor' in caplog.text
    assert rec.channel is None and 'xenevtchn_close' in rec.names(), 'channel closed'
    multi = [a for n, a in rec.calls if n == 'xc_altp2m_set_mem_access_multi'][0]
    assert set(multi[3]) == {xenlibs.XENMEM_access_rx2rw}, 'the view logs writes instead'


def test_a_failed_event_channel_bind_disables_the_ring_and_falls_back():
    rec, driver, handle = _open()
    rec.fail['xenevtchn_bind_interdomain'] = EINVAL
    with handle.snapshot() as report:
        pass
    assert report.mode == xen.DETECT, 'detect-only'
    assert _after_open(rec)[3:8] == ['xenevtchn_open', 'xc_monitor_enable',
                                     'xenevtchn_bind_interdomain', 'xc_monitor_disable',
                                     'munmap'], 'the ring is disabled and unmapped at once'
    assert rec.domains[3].monitor is None and rec.channel is None, 'nothing is left'


def test_driver_capabilities():
    assert xen.XenDriver.name == 'xen'
    assert set(xen.XenDriver.capabilities) == {'live', 'pause', 'snapshot', 'trigger:vmfunc',
                                               'trigger:rdtsc'}

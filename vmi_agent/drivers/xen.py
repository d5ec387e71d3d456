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

"""The ``xen`` driver: HVM guests of the Xen 4.17 hypervisor this agent runs in dom0 of.

Guests are listed with ``xc_domain_getinfolist``; the instance UUID is the domain handle
Xen keeps (set by the toolstack at creation, not writable by the guest), the name comes
from xenstore (``/local/domain/<domid>/name``; None when xenstore cannot be reached).
Memory is read through foreign mappings (:mod:`vmi_agent.drivers.xenmemory`).  All C
calls go through :class:`vmi_agent.drivers.xenlibs.XenLibs`.

Consistency modes:

``pause``
    ``xc_domain_pause`` / ``xc_domain_unpause`` around the run (unpause also when the
    run fails).

``snapshot`` (altp2m; Intel VT-x with EPT, Xen booted with ``altp2m=1``, the domain
    created with ``altp2m="external"``)
    What it does: pause the domain; create an altp2m view whose RAM pages all have access
    ``XENMEM_access_rx2rw`` (``xc_altp2m_set_mem_access_multi``); switch every vCPU to it;
    hide the host view (``xc_altp2m_set_visibility``), since VMFUNC leaf 0 would let the
    guest switch back to any visible view by itself; unpause.  The guest runs on while
    the probes read.  A guest write to a page of the view turns that page's access into
    ``rw`` in the view (Xen does this itself, no vm_event listener needed).  After the
    run: pause; ask the view for the access of every gfn the run read
    (``xc_altp2m_get_mem_access``); show the host view again and switch back to it
    (view 0); destroy the view; unpause.  The :class:`SnapshotReport` the ``with``
    yields lists the gfns the run read that the guest wrote while it ran.

    What it guarantees: an empty ``written_while_read`` means no vCPU of the guest wrote,
    through its EPT, to any page the run read, between the first and the last pause; for
    those pages the run saw what a paused guest would have shown it.

    What it does NOT give: a frozen copy.  dom0's foreign mappings read the host p2m,
    whatever view the guest runs in, and the view maps the same frames, so the probes
    read live memory; a write is detected, not prevented or undone.  A real
    copy-on-write snapshot ("copy a page before its first write lands") needs the write
    to stop the vCPU until dom0 has copied the page: a vm_event monitor ring
    (``xc_monitor_enable``, libxenevtchn, the ``vm_event`` ring protocol).  That is not
    implemented.  Writes that do not go through the guest's EPT are not seen either: DMA
    by the device model or PV backends (they write through the host p2m) and writes by
    Xen itself (runstate areas, time info, grant copies).  It assumes the agent is the
    only user of altp2m for the domain (no other view the guest could switch to) and
    ``altp2m="external"`` (the guest cannot change views or access with HVMOPs).  Its
    cost: one access entry per RAM page set up per run, one hypercall per page read to
    check.
"""

import contextlib
import ctypes
import itertools
import logging
import time
import uuid as uuidlib
import weakref

from vmi_agent.drivers import base
from vmi_agent.drivers import xenlibs
from vmi_agent.drivers import xenmemory

LOG = logging.getLogger(__name__)

#: Domain ids at and above this are reserved (DOMID_FIRST_RESERVED, xen/xen.h).
DOMID_FIRST_RESERVED = 0x7ff0
#: Domains asked for per xc_domain_getinfolist call.
LIST_BATCH = 256
#: Pages per xc_altp2m_set_mem_access_multi call.
ACCESS_BATCH = 4096
#: The host p2m's view index.
HOST_VIEW = 0
#: Longest name read from xenstore (the guest cannot write it, but bound it anyway).
MAX_NAME = 256


class SnapshotReport(base.Pause):
    """What one ``with handle.snapshot()`` saw; filled in when the body ends.

    ``seconds`` is the time the vCPUs were paused (view set up, then checked and torn
    down); ``pages_read`` the gfns the run read; ``written_while_read`` those of them the
    guest wrote during the run (their content may be torn).
    """

    def __init__(self):
        super().__init__()
        self.view = None
        self.pages_read = 0
        self.written_while_read = []

    @property
    def consistent(self):
        return not self.written_while_read


def _domain_uuid(info):
    return str(uuidlib.UUID(bytes=bytes(info.handle)))


class XenGuestHandle(base.GuestHandle):
    """An opened domain: its ForeignMemory plus pause/snapshot through libxenctrl."""

    def __init__(self, driver, info, domid, memory):
        super().__init__(info, memory)
        self._driver = driver
        self.domid = domid

    def _call(self, name, *args):
        return self._driver.ctrl_call(name, self.domid, *args)

    def _stop(self):
        self._call('xc_domain_pause')

    def _resume(self):
        self._call('xc_domain_unpause')

    def check_alive(self):
        self._driver.domain_info(self.domid, self.info.uuid)

    @contextlib.contextmanager
    def snapshot(self):
        state = ctypes.c_bool(False)
        self._call('xc_altp2m_get_domain_state', state)
        if not state.value:
            raise base.ConsistencyNotSupported(
                'xen driver: altp2m is not active for domain %d (boot Xen with altp2m=1, '
                'create the domain with altp2m="external", or set [xen] activate_altp2m)'
                % self.domid)
        report = SnapshotReport()
        report.view = self._install_view(report)
        self.memory.start_tracking()
        try:
            yield report
        finally:
            touched = self.memory.stop_tracking()
            self._remove_view(report, touched)

    def _install_view(self, report):
        """Pause, create the rx2rw view, switch to it, hide view 0, unpause: the view id."""
        self.memory.ranges()    # probe before pausing, not while the guest waits
        started = time.perf_counter()
        self._stop()
        view = None
        try:
            view_id = ctypes.c_uint16(0)
            self._call('xc_altp2m_create_view', xenlibs.XENMEM_access_default, view_id)
            view = view_id.value
            self._restrict(view)
            self._call('xc_altp2m_switch_to_view', view)
            # VMFUNC leaf 0 lets the guest itself switch to any visible view: hide the
            # host view, or a hostile guest could step out of the logging view.
            self._call('xc_altp2m_set_visibility', HOST_VIEW, False)
        except BaseException:
            if view is not None:
                self._quietly('xc_altp2m_set_visibility', HOST_VIEW, True)
                self._quietly('xc_altp2m_switch_to_view', HOST_VIEW)
                self._quietly('xc_altp2m_destroy_view', view)
            self._quietly('xc_domain_unpause')
            raise
        finally:
            report.seconds += time.perf_counter() - started
        self._resume()
        return view

    def _restrict(self, view):
        """Make every RAM page of ``view`` rx2rw: r-x until written, then rw."""
        gfns = self.memory.ram_gfns()
        while True:
            batch = list(itertools.islice(gfns, ACCESS_BATCH))
            if not batch:
                return
            access = (ctypes.c_uint8 * len(batch))(
                *([xenlibs.XENMEM_access_rx2rw] * len(batch)))
            pages = (ctypes.c_uint64 * len(batch))(*batch)
            self._call('xc_altp2m_set_mem_access_multi', view, access, pages, len(batch))

    def _remove_view(self, report, touched):
        """Pause, find the read pages written in the view, drop the view, unpause."""
        started = time.perf_counter()
        self._quietly('xc_domain_pause')
        try:
            report.pages_read = len(touched)
            report.written_while_read = self._written(report.view, touched)
            self._quietly('xc_altp2m_set_visibility', HOST_VIEW, True)
            self._quietly('xc_altp2m_switch_to_view', HOST_VIEW)
            self._quietly('xc_altp2m_destroy_view', report.view)
        finally:
            self._quietly('xc_domain_unpause')
            report.seconds += time.perf_counter() - started
        if report.written_while_read:
            LOG.warning('xen: domain %d wrote %d of the %d pages read during the snapshot '
                        'run; their contents may be torn', self.domid,
                        len(report.written_while_read), len(touched))

    def _written(self, view, gfns):
        """The ``gfns`` no longer rx2rw in ``view`` (written, or unknown: counted in)."""
        written = []
        access = xenlibs.xenmem_access_t(0)
        for gfn in sorted(gfns):
            if self._quietly('xc_altp2m_get_mem_access', view, gfn, access) \
                    or access.value != xenlibs.XENMEM_access_rx2rw:
                written.append(gfn)
        return written

    def _quietly(self, name, *args):
        """Call during clean-up: log a failure and go on; True if it failed."""
        try:
            self._call(name, *args)
        except base.DriverError as exc:
            LOG.error('%s', exc)
            return True
        return False


class XenDriver(base.Driver):
    """Driver for HVM domains of the Xen hypervisor (see the module docstring)."""

    name = 'xen'
    capabilities = ('live', 'pause', 'snapshot', 'trigger:vmfunc', 'trigger:rdtsc')

    def __init__(self, conf, libs=None):
        super().__init__(conf)
        self.libs = libs if libs is not None else xenlibs.XenLibs()
        self._xch = self.libs.ctrl.xc_interface_open(None, None, 0)
        if not self._xch:
            raise base.DriverError(
                'xen driver: cannot open the hypervisor interface (is this a Xen dom0?): '
                'xc_interface_open failed, errno %d' % self.libs.errno())
        self._fmem = None
        self._memories = weakref.WeakSet()     # to unmap before closing self._fmem
        self._xs = None
        self._xs_tried = False

    # -- C calls -------------------------------------------------------------------------
    def ctrl_call(self, name, domid, *args):
        """``libs.ctrl.<name>(xch, domid, *args)``; DriverError/GuestVanished on < 0."""
        rc = getattr(self.libs.ctrl, name)(self._xch, domid, *args)
        if rc < 0:
            errno = self.libs.errno()
            cls = base.GuestVanished if errno == 3 else base.DriverError    # ESRCH
            raise cls('xen driver: %s for domain %d failed (errno %d)'
                      % (name, domid, errno))
        return rc

    def _infos(self, first, count):
        infos = (xenlibs.DomainInfo * count)()
        n = self.libs.ctrl.xc_domain_getinfolist(self._xch, first, count, infos)
        if n < 0:
            raise base.DriverError('xen driver: xc_domain_getinfolist failed (errno %d)'
                                   % self.libs.errno())
        return list(infos[:min(n, count)])

    def _all_domains(self):
        first = 0
        while first < DOMID_FIRST_RESERVED:
            batch = self._infos(first, LIST_BATCH)
            yield from batch
            if len(batch) < LIST_BATCH or batch[-1].domain < first:
                return
            first = batch[-1].domain + 1

    def domain_info(self, domid, expected_uuid=None):
        """The DomainInfo of a live ``domid``; GuestVanished if gone or reused."""
        found = self._infos(domid, 1)
        if not found or found[0].domain != domid:
            raise base.GuestVanished('xen driver: domain %d is gone' % domid)
        info = found[0]
        if info.flags & (xenlibs.XEN_DOMINF_dying | xenlibs.XEN_DOMINF_shutdown):
            raise base.GuestVanished('xen driver: domain %d is shutting down' % domid)
        if expected_uuid is not None and _domain_uuid(info) != expected_uuid:
            raise base.GuestVanished('xen driver: domain %d is now another guest' % domid)
        return info

    # -- xenstore ------------------------------------------------------------------------
    def _xenstore(self):
        if not self._xs_tried:
            self._xs_tried = True
            self._xs = self.libs.store.xs_open(xenlibs.XS_OPEN_READONLY)
            if not self._xs:
                LOG.warning('xen driver: cannot open xenstore (errno %d); guests will '
                            'have no names', self.libs.errno())
        return self._xs

    def _read_xenstore(self, path):
        xs = self._xenstore()
        if not xs:
            return None
        length = ctypes.c_uint(0)
        ptr = self.libs.store.xs_read(xs, xenlibs.XBT_NULL, path.encode(), length)
        if not ptr:
            return None
        try:
            return ctypes.string_at(ptr, min(length.value, MAX_NAME)).decode(
                'utf-8', 'replace')
        finally:
            self.libs.free(ptr)

    # -- Driver --------------------------------------------------------------------------
    def list_guests(self):
        guests = []
        for info in self._all_domains():
            if info.domain == 0 or not info.flags & xenlibs.XEN_DOMINF_hvm_guest:
                continue
            if info.flags & (xenlibs.XEN_DOMINF_dying | xenlibs.XEN_DOMINF_shutdown):
                continue
            domid = info.domain
            guests.append(base.GuestInfo(
                uuid=_domain_uuid(info),
                name=self._read_xenstore('/local/domain/%d/name' % domid),
                triggers=(('vmfunc', str(domid)),),
                location=(domid,)))
        return guests

    def open(self, info):
        try:
            (domid,) = info.location
        except (TypeError, ValueError):
            raise base.GuestNotFound('xen driver: %s has no domain id' % info.uuid)
        dominfo = self.domain_info(domid, info.uuid)
        max_gpfn = xenlibs.xen_pfn_t(0)
        self.ctrl_call('xc_domain_maximum_gpfn', domid, max_gpfn)
        if self.conf.xen.activate_altp2m:
            self._activate_altp2m(domid)
        memory = xenmemory.ForeignMemory(
            self.libs, self._foreign_memory(), domid, max_gpfn.value, dominfo.tot_pages,
            chunk_pages=self.conf.xen.chunk_pages, cache_chunks=self.conf.xen.chunk_cache)
        self._memories.add(memory)
        return XenGuestHandle(self, info, domid, memory)

    def _activate_altp2m(self, domid):
        state = ctypes.c_bool(False)
        try:
            self.ctrl_call('xc_altp2m_get_domain_state', domid, state)
            if not state.value:
                self.ctrl_call('xc_altp2m_set_domain_state', domid, True)
        except base.DriverError as exc:
            LOG.warning('%s: no altp2m, so no VMFUNC trigger and no snapshot mode for this '
                        'domain (Xen needs altp2m=1, the domain altp2m="external")', exc)

    def _foreign_memory(self):
        if self._fmem is None:
            fmem = self.libs.fmem.xenforeignmemory_open(None, 0)
            if not fmem:
                raise base.DriverError('xen driver: xenforeignmemory_open failed (errno %d)'
                                       % self.libs.errno())
            self._fmem = fmem
        return self._fmem

    def close(self):
        if self._xs:
            self.libs.store.xs_close(self._xs)
            self._xs = None
        if self._fmem is not None:
            for memory in list(self._memories):
                memory.close()
            self.libs.fmem.xenforeignmemory_close(self._fmem)
            self._fmem = None
        if self._xch:
            self.libs.ctrl.xc_interface_close(self._xch)
            self._xch = None

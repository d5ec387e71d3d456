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
    Two variants; the :class:`SnapshotReport` says which ran (``mode``).

    ``copy`` (the default, ``[xen] snapshot_copy``): copy-before-write.  Pause the
    domain; create an altp2m view; enable the vm_event monitor ring
    (``xc_monitor_enable``), bind its event channel (libxenevtchn) and start the thread
    that serves it; give every RAM page of the view access ``XENMEM_access_rx``
    (``xc_altp2m_set_mem_access_multi``); switch every vCPU to it; hide the host view
    (``xc_altp2m_set_visibility``: VMFUNC leaf 0 would let the guest switch back to any
    visible view by itself); unpause.  A guest write to a page of the view now stops its vCPU and
    puts a mem_access request on the ring.  The thread
    (:class:`vmi_agent.drivers.xenevents.WriteMonitor`) copies the page, through the
    foreign mapping of the host p2m (same frame, write not landed yet), into the
    memory's overlay (:meth:`~vmi_agent.drivers.xenmemory.ForeignMemory.preserve`,
    at most ``[xen] snapshot_max_pages`` pages), makes the page ``rwx`` in the view
    (``xc_altp2m_set_mem_access``: one fault per page), and answers, which resumes the
    vCPU.  Reads return copied pages from the overlay and every other page live.  After
    the run: pause; show the host view and switch back to it; answer what is left on the
    ring, ``xc_monitor_resume``, ``xc_monitor_disable``, unmap the ring page, unbind and
    close the event channel; drop the overlay; destroy the view; unpause (the unpause,
    and every release, also when something failed).

    What copy mode guarantees: every page the run read that the guest wrote through
    its EPT between the two pauses reads as it was at the first pause, unless it is in
    ``written_while_read``: the pages the run read that the guest wrote without a copy
    kept (the overlay was full, or the page could not be mapped).  An empty
    ``written_while_read`` means the run saw the memory of the first pause, for all the
    pages it read.  The guest pays one event round trip to dom0 (a vCPU stop) per page
    it first writes during the run.

    ``detect`` (``snapshot_copy = false``, or the ring cannot be set up: no
    libxenevtchn, ``xc_monitor_enable`` fails, e.g. because another monitor is attached;
    logged once per guest with the reason): the view's RAM pages get
    ``XENMEM_access_rx2rw`` instead, which Xen itself turns into ``rw`` on the first
    write (no listener).  After the run, the access of every gfn the run read is asked
    (``xc_altp2m_get_mem_access``) before switching back; ``written_while_read`` lists
    the read pages the guest wrote.  Writes are detected, not prevented or undone: an
    empty list means no vCPU wrote, through its EPT, to any page the run read.

    What neither mode sees: writes that do not go through the guest's EPT: DMA by the
    device model or PV backends (they write through the host p2m), writes by Xen
    itself (runstate areas, time info, grant copies) and the memory writes of
    instructions Xen emulates for the guest (MMIO string moves: ``hvm_copy`` checks no
    altp2m access).  Both assume the agent is the
    only user of altp2m and of the monitor ring for the domain, and
    ``altp2m="external"`` (the guest cannot change views or access with HVMOPs).  Cost
    per run: one access entry per RAM page set up; detect mode adds one hypercall per
    page read, copy mode one page copy, one hypercall and one event per page written.
    Nothing of this has run on Xen: the call sequences are tested against a recorder
    of the C libraries, the ring and event layouts against the headers (see
    ``xen-patch/README.md``).
"""

import contextlib
import ctypes
import itertools
import logging
import time
import uuid as uuidlib
import weakref

from vmi_agent.drivers import base
from vmi_agent.drivers import xenevents
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
#: SnapshotReport.mode: pages copied before the guest's first write, or writes detected.
COPY, DETECT = 'copy', 'detect'


class SnapshotReport(base.Pause):
    """What one ``with handle.snapshot()`` saw; filled in when the body ends.

    ``mode`` is ``'copy'`` or ``'detect'`` (see the module docstring); ``seconds`` the
    time the whole domain was paused (view set up, then torn down); ``pages_read`` the
    gfns the run read; ``written_while_read`` those of them the guest wrote during the
    run without a copy kept (their content may be torn).  Copy mode also counts
    ``pages_copied``, ``pages_lost`` (written past ``snapshot_max_pages`` or unmappable),
    ``events`` answered, ``events_ignored`` (answered, not acted on) and sets
    ``monitor_error`` if it had to give up the ring.
    """

    def __init__(self):
        super().__init__()
        self.view = None
        self.mode = None
        self.pages_read = 0
        self.written_while_read = []
        self.pages_copied = 0
        self.pages_lost = 0
        self.events = 0
        self.events_ignored = 0
        self.monitor_error = None

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
        self._fallback_logged = False

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
        monitor = self._install_view(report)
        self.memory.start_tracking()
        try:
            yield report
        finally:
            touched = self.memory.stop_tracking()
            self._remove_view(report, touched, monitor)

    def _install_view(self, report):
        """Pause, set up the view (and the monitor), switch to it, unpause: the monitor.

        The monitor is None in detect-only mode.  On any failure everything done so far
        is undone and the domain unpaused before the error propagates.
        """
        self.memory.ranges()    # probe before pausing, not while the guest waits
        started = time.perf_counter()
        self._stop()
        view = monitor = None
        try:
            view_id = ctypes.c_uint16(0)
            self._call('xc_altp2m_create_view', xenlibs.XENMEM_access_default, view_id)
            view = view_id.value
            monitor = self._start_monitor(view)
            self._restrict(view, xenlibs.XENMEM_access_rx if monitor
                           else xenlibs.XENMEM_access_rx2rw)
            self._call('xc_altp2m_switch_to_view', view)
            # VMFUNC leaf 0 lets the guest itself switch to any visible view: hide the
            # host view, or a hostile guest could step out of the logging view.
            self._call('xc_altp2m_set_visibility', HOST_VIEW, False)
        except BaseException:
            if view is not None:
                self._quietly('xc_altp2m_set_visibility', HOST_VIEW, True)
                self._quietly('xc_altp2m_switch_to_view', HOST_VIEW)
            self._stop_monitor(monitor)
            if view is not None:
                self._quietly('xc_altp2m_destroy_view', view)
            self._quietly('xc_domain_unpause')
            raise
        finally:
            report.seconds += time.perf_counter() - started
        report.view = view
        report.mode = COPY if monitor else DETECT
        self._resume()
        return monitor

    def _start_monitor(self, view):
        """The running WriteMonitor for ``view``, or None: detect-only (logged why)."""
        conf = self._driver.conf.xen
        if not conf.snapshot_copy:
            return None
        self.memory.start_overlay(conf.snapshot_max_pages)
        monitor = xenevents.WriteMonitor(self._driver, self.domid, view, self.memory)
        try:
            monitor.start()
        except xenevents.MonitorUnavailable as exc:
            self.memory.stop_overlay()
            log = LOG.debug if self._fallback_logged else LOG.warning
            self._fallback_logged = True
            log('xen: domain %d: no copy-before-write snapshot, %s; falling back to '
                'detecting writes: pages the guest writes while the run reads them are '
                'reported in written_while_read, not preserved', self.domid, exc)
            return None
        except BaseException:
            self.memory.stop_overlay()
            raise
        return monitor

    def _stop_monitor(self, monitor):
        """Drain and release ``monitor`` and drop the overlay: its OverlayResult."""
        if monitor is None:
            return None
        try:
            monitor.stop()
        except Exception:
            LOG.exception('xen: domain %d: stopping the monitor failed', self.domid)
        finally:
            result = self.memory.stop_overlay()
        return result

    def _restrict(self, view, access):
        """Give every RAM page of ``view`` ``access`` (rx: writes fault; rx2rw: logged)."""
        gfns = self.memory.ram_gfns()
        while True:
            batch = list(itertools.islice(gfns, ACCESS_BATCH))
            if not batch:
                return
            accesses = (ctypes.c_uint8 * len(batch))(*([access] * len(batch)))
            pages = (ctypes.c_uint64 * len(batch))(*batch)
            self._call('xc_altp2m_set_mem_access_multi', view, accesses, pages, len(batch))

    def _remove_view(self, report, touched, monitor):
        """Pause, switch back, settle what the guest wrote, drop the view, unpause.

        Copy mode: back on the host view the monitor answers what is left on the ring
        and is released, then the overlay is dropped; the read pages the guest wrote
        without a copy kept are ``written_while_read``.  Detect mode: the read pages no
        longer rx2rw in the view are, asked before leaving it.
        """
        started = time.perf_counter()
        self._quietly('xc_domain_pause')
        try:
            report.pages_read = len(touched)
            if monitor is None:
                report.written_while_read = self._written(report.view, touched)
            self._quietly('xc_altp2m_set_visibility', HOST_VIEW, True)
            self._quietly('xc_altp2m_switch_to_view', HOST_VIEW)
            overlay = self._stop_monitor(monitor)
            if overlay is not None:
                self._settle(report, monitor, overlay, touched)
            self._quietly('xc_altp2m_destroy_view', report.view)
        finally:
            self._quietly('xc_domain_unpause')
            report.seconds += time.perf_counter() - started
        if report.written_while_read:
            LOG.warning('xen: domain %d wrote %d of the %d pages read during the snapshot '
                        'run without a copy kept; their contents may be torn', self.domid,
                        len(report.written_while_read), len(touched))

    def _settle(self, report, monitor, overlay, touched):
        report.pages_copied = overlay.copied
        report.pages_lost = len(overlay.lost)
        report.events = monitor.handled
        report.events_ignored = monitor.ignored
        report.monitor_error = monitor.broken
        report.written_while_read = overlay.written(touched)
        if overlay.lost:
            LOG.warning('xen: domain %d: the snapshot kept %d pages ([xen] '
                        'snapshot_max_pages) and let %d more writes land uncopied',
                        self.domid, overlay.copied, len(overlay.lost))

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
    def ctrl_raw(self, name, domid, *args):
        """``libs.ctrl.<name>(xch, domid, *args)`` as it returns (pointers: None = fail)."""
        return getattr(self.libs.ctrl, name)(self._xch, domid, *args)

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

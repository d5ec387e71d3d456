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

"""The Xen 4.17 vm_event monitor ring, from the consumer's (dom0's) side.

The ``xen`` driver's copy-before-write snapshot needs a guest write to stop the vCPU until
dom0 has copied the page.  Xen does that for a page whose access in the vCPU's altp2m view
forbids the write: it pauses the vCPU and puts a ``VM_EVENT_REASON_MEM_ACCESS`` request on
the domain's monitor ring (``xc_monitor_enable``), signals the event channel, and resumes
the vCPU when the consumer puts a response with ``VM_EVENT_FLAG_VCPU_PAUSED`` on the ring
and notifies it back.

This module holds the wire format, the ring protocol and the consumer that serves it:

- :class:`VmEvent`: ``vm_event_request_t`` / ``vm_event_response_t`` (the same struct,
  ``xen/vm_event.h``, ``VM_EVENT_INTERFACE_VERSION`` 7), with the ``u`` union reduced
  to ``mem_access`` (plus raw words that give it its size) and the ``data`` union to raw
  words: this consumer reads no registers and sets none.
- :class:`BackRing`: the back half of ``DEFINE_RING_TYPES(vm_event, ...)``
  (``xen/io/ring.h``): Xen is the front end (it produces requests and consumes
  responses), dom0 the back end.  The shared page starts with the four ``RING_IDX``
  counters and 48 bytes of padding; the entries follow, as many as fit, rounded down to
  a power of two (8 on a 4 KiB page).
- :class:`WriteMonitor`: one snapshot's consumer: enables the ring
  (``xc_monitor_enable``), binds its event channel (libxenevtchn), and serves it from a
  thread: copy the written page, lift its protection, answer; on stop it answers what is
  left and releases everything.

The layouts are checked against the installed headers by compiling them
(``tests/unit/drivers/test_xen_libs.py``).  The ring page is shared with Xen, never
with the guest, but it is still read defensively: every request is copied out of the
page before it is looked at (``RING_COPY_REQUEST``), indices are 32-bit counters that
wrap, and a producer index that claims more requests than the ring holds is reported as
a corrupt ring instead of being followed.  No memory barriers are issued: CPython
executes the loads and stores in program order and x86 does not reorder stores with
stores or loads with loads, which is all ``xen_wmb``/``xen_rmb`` provide there.
"""

import ctypes
import logging
import os
import select
import threading

from vmi_agent.drivers import base
from vmi_agent.drivers import xenlibs

LOG = logging.getLogger(__name__)

PAGE_SHIFT = xenlibs.PAGE_SHIFT
PAGE_SIZE = xenlibs.PAGE_SIZE
EBUSY = 16
#: How long stop() waits for the service thread (it wakes every poll_seconds).
JOIN_SECONDS = 5.0

VM_EVENT_INTERFACE_VERSION = 0x00000007

VM_EVENT_FLAG_VCPU_PAUSED = 1 << 0
VM_EVENT_FLAG_EMULATE = 1 << 2
VM_EVENT_FLAG_ALTERNATE_P2M = 1 << 7

VM_EVENT_REASON_MEM_ACCESS = 1

MEM_ACCESS_R = 1 << 0
MEM_ACCESS_W = 1 << 1
MEM_ACCESS_X = 1 << 2

RING_IDX_MASK = 0xffffffff


class MemAccess(ctypes.Structure):
    """``struct vm_event_mem_access``."""

    _fields_ = [('gfn', ctypes.c_uint64),
                ('offset', ctypes.c_uint64),
                ('gla', ctypes.c_uint64),
                ('flags', ctypes.c_uint32),
                ('_pad', ctypes.c_uint32)]


class EventUnion(ctypes.Union):
    """The ``u`` union of ``vm_event_st``: only ``mem_access`` is used here."""

    _fields_ = [('mem_access', MemAccess),
                ('raw', ctypes.c_uint64 * 4)]


class VmEvent(ctypes.Structure):
    """``vm_event_request_t`` and ``vm_event_response_t`` (one struct, xen/vm_event.h)."""

    _fields_ = [('version', ctypes.c_uint32),
                ('flags', ctypes.c_uint32),
                ('reason', ctypes.c_uint32),
                ('vcpu_id', ctypes.c_uint32),
                ('altp2m_idx', ctypes.c_uint16),
                ('_pad', ctypes.c_uint16 * 3),
                ('u', EventUnion),
                # union { regs (x86: struct vm_event_regs_x86), emul }: 344 bytes.
                ('data', ctypes.c_uint64 * 43)]


class SharedRingHeader(ctypes.Structure):
    """The head of ``struct vm_event_sring``; ``ring[]`` starts right after it."""

    _fields_ = [('req_prod', ctypes.c_uint32),
                ('req_event', ctypes.c_uint32),
                ('rsp_prod', ctypes.c_uint32),
                ('rsp_event', ctypes.c_uint32),
                ('pvt', ctypes.c_uint8 * 4),
                ('_pad', ctypes.c_uint8 * 44)]


def _round_down_pow2(n):
    """``__RD32``: ``n`` rounded down to a power of two (0 stays 0)."""
    return 1 << (n.bit_length() - 1) if n > 0 else 0


def ring_size(page_size=PAGE_SIZE):
    """Entries in a ring on ``page_size`` bytes (``__CONST_RING_SIZE``)."""
    return _round_down_pow2((page_size - ctypes.sizeof(SharedRingHeader))
                            // ctypes.sizeof(VmEvent))


class CorruptRing(Exception):
    """The producer index claims more requests than the ring can hold."""


class BackRing:
    """The consumer side of the vm_event ring on the shared page at address ``page``.

    ``attach`` starts both private counters at ``index`` (``BACK_RING_ATTACH``);
    :meth:`init_shared` is ``SHARED_RING_INIT``, which the consumer does once, before
    the first request can be produced.
    """

    def __init__(self, page, page_size=PAGE_SIZE, index=0):
        self.page = page
        self.size = ring_size(page_size)
        self.sring = SharedRingHeader.from_address(page)
        self.rsp_prod_pvt = index & RING_IDX_MASK
        self.req_cons = index & RING_IDX_MASK

    def init_shared(self):
        """``SHARED_RING_INIT``: empty ring, notify on the first request/response."""
        ctypes.memset(self.page, 0, ctypes.sizeof(SharedRingHeader))
        self.sring.req_prod = self.sring.rsp_prod = 0
        self.sring.req_event = self.sring.rsp_event = 1
        self.rsp_prod_pvt = self.req_cons = 0

    def _slot(self, index):
        return self.page + ctypes.sizeof(SharedRingHeader) \
            + (index & (self.size - 1)) * ctypes.sizeof(VmEvent)

    def unconsumed_requests(self):
        """``XEN_RING_NR_UNCONSUMED_REQUESTS``; CorruptRing if the producer overran.

        ``RING_REQUEST_PROD_OVERFLOW`` first: Xen never has more requests outstanding
        than the ring has slots, so a producer index further ahead is not followed.
        """
        req_prod = self.sring.req_prod
        if (req_prod - self.rsp_prod_pvt) & RING_IDX_MASK > self.size:
            raise CorruptRing('vm_event ring: req_prod %d is more than %d ahead of the '
                              'responses (%d)' % (req_prod, self.size, self.rsp_prod_pvt))
        req = (req_prod - self.req_cons) & RING_IDX_MASK
        rsp = (self.size - ((self.req_cons - self.rsp_prod_pvt) & RING_IDX_MASK)) \
            & RING_IDX_MASK
        return min(req, rsp)

    def get_request(self):
        """Copy the next request out of the ring and consume it (``RING_COPY_REQUEST``).

        Also sets ``req_event`` so that Xen notifies on the request after it, as
        xen-access's ``get_request`` does.
        """
        req = VmEvent.from_buffer_copy(ctypes.string_at(self._slot(self.req_cons),
                                                        ctypes.sizeof(VmEvent)))
        self.req_cons = (self.req_cons + 1) & RING_IDX_MASK
        self.sring.req_event = (self.req_cons + 1) & RING_IDX_MASK
        return req

    def put_response(self, rsp):
        """Write ``rsp`` to the next response slot (private until :meth:`push`)."""
        ctypes.memmove(self._slot(self.rsp_prod_pvt), ctypes.addressof(rsp),
                       ctypes.sizeof(VmEvent))
        self.rsp_prod_pvt = (self.rsp_prod_pvt + 1) & RING_IDX_MASK

    def push_responses(self):
        """``RING_PUSH_RESPONSES``: publish the responses written so far."""
        self.sring.rsp_prod = self.rsp_prod_pvt

    def final_check(self):
        """``RING_FINAL_CHECK_FOR_REQUESTS``: True if requests came in meanwhile."""
        if self.unconsumed_requests():
            return True
        self.sring.req_event = (self.req_cons + 1) & RING_IDX_MASK
        return bool(self.unconsumed_requests())


def response_to(req):
    """The response that resumes the vCPU of ``req`` and asks nothing else of Xen.

    As xen-access builds it: our interface version, the request's vCPU and reason,
    ``VM_EVENT_FLAG_VCPU_PAUSED`` only if the request had it (Xen unpauses only then),
    and the request's ``mem_access`` back (Xen's emulation check reads it).
    """
    rsp = VmEvent()
    rsp.version = VM_EVENT_INTERFACE_VERSION
    rsp.vcpu_id = req.vcpu_id
    rsp.reason = req.reason
    rsp.flags = req.flags & VM_EVENT_FLAG_VCPU_PAUSED
    rsp.u.mem_access = req.u.mem_access
    return rsp


class MonitorUnavailable(Exception):
    """The monitor ring could not be set up (no libxenevtchn, xc_monitor_enable failed)."""


class WriteMonitor:
    """Copy-before-write for one snapshot: serves the monitor ring of domain ``domid``.

    For a write ``mem_access`` event on a RAM gfn of altp2m ``view`` (the vCPU is paused
    on it, so the write has not landed): ``memory.preserve(gfn)`` copies the page into
    the snapshot overlay unless it was copied already or the overlay is full; the gfn is
    made ``rwx`` in the view (``xc_altp2m_set_mem_access``) so that the guest faults once
    per page; the response resumes the vCPU, which then repeats its write.  If lifting
    fails the response asks Xen to emulate the write instead (``VM_EVENT_FLAG_EMULATE``),
    so the vCPU still moves on (the page stays copied; its next write faults again).

    Every request gets a response, whatever it holds: a request that is not such a write
    (wrong interface version, another reason, a gfn that is not RAM, another view) is
    answered, counted in ``ignored`` and otherwise left alone, so no vCPU stays paused
    on it.  An exception while handling one is logged and counted in ``errors``; the
    request is still answered and the thread goes on.

    ``driver`` gives the C calls (``ctrl_call``, ``ctrl_raw``, ``libs``).  :meth:`start`
    runs with the domain paused; :meth:`stop` too (it drains the ring).
    """

    #: Ring passes per service call: bounds one call when requests keep coming.
    MAX_PASSES = 64
    #: Lift failures logged per snapshot (then only counted).
    MAX_LOGGED = 8

    def __init__(self, driver, domid, view, memory, poll_seconds=0.1):
        self._driver = driver
        self._libs = driver.libs
        self.domid = domid
        self.view = view
        self.memory = memory
        self.poll_seconds = poll_seconds
        self.ring = None
        self.ring_page = None
        self.remote_port = None
        self.local_port = None
        self._xce = None
        self._fd = None
        self._wake = None               # a pipe: stop() wakes the thread at once
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = None
        self.handled = 0
        self.ignored = 0
        self.errors = 0
        self.lift_failures = 0
        #: Set to the reason when the ring was found corrupt (servicing stopped).
        self.broken = None

    # -- setup ---------------------------------------------------------------------------
    def start(self):
        """Enable the ring, bind its event channel, start the service thread.

        MonitorUnavailable (with the reason) if any step fails; what was done is undone.
        """
        evtchn = self._libs.evtchn
        if evtchn is None:
            raise MonitorUnavailable('libxenevtchn is not loaded (%s)'
                                     % getattr(self._libs, 'evtchn_error', 'unknown'))
        self._xce = evtchn.xenevtchn_open(None, 0)
        if not self._xce:
            raise MonitorUnavailable('xenevtchn_open failed (errno %d)' % self._libs.errno())
        try:
            self._enable_ring()
            self._bind()
        except MonitorUnavailable:
            self._release()
            raise
        self.ring = BackRing(self.ring_page)
        self.ring.init_shared()
        self._wake = os.pipe()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='xen-monitor-%d' % self.domid)
        self._thread.start()

    def _enable_ring(self):
        port = ctypes.c_uint32(0)
        page = self._driver.ctrl_raw('xc_monitor_enable', self.domid, port)
        if not page:
            raise MonitorUnavailable('xc_monitor_enable failed (errno %d%s)' % (
                self._libs.errno(),
                '; another monitor is attached to the domain'
                if self._libs.errno() == EBUSY else ''))
        self.ring_page = page
        self.remote_port = port.value

    def _bind(self):
        evtchn = self._libs.evtchn
        local = evtchn.xenevtchn_bind_interdomain(self._xce, self.domid, self.remote_port)
        if local < 0:
            raise MonitorUnavailable('xenevtchn_bind_interdomain failed (errno %d)'
                                     % self._libs.errno())
        self.local_port = local
        fd = evtchn.xenevtchn_fd(self._xce)
        if fd < 0:
            raise MonitorUnavailable('xenevtchn_fd failed (errno %d)' % self._libs.errno())
        self._fd = fd

    # -- servicing -----------------------------------------------------------------------
    def _run(self):
        while not self._stopping.is_set() and not self.broken:
            try:
                ready, _, _ = select.select([self._fd, self._wake[0]], [], [],
                                            self.poll_seconds)
                if self._fd in ready:
                    self._acknowledge()
                self.service()
            except Exception:
                self.errors += 1
                LOG.exception('xen: domain %d: serving the monitor ring failed', self.domid)
                self._stopping.wait(self.poll_seconds)

    def _acknowledge(self):
        """``xenevtchn_pending`` + ``xenevtchn_unmask``: re-arm the event channel."""
        port = self._libs.evtchn.xenevtchn_pending(self._xce)
        if port >= 0:
            self._libs.evtchn.xenevtchn_unmask(self._xce, port)

    def service(self, wait=None):
        """Answer every request on the ring now; the number answered.

        A corrupt ring (:class:`CorruptRing`) is given up: ``broken`` says why, and
        nothing more is read from it.  ``wait``: give up (0) after that many seconds
        if another caller is still serving.
        """
        if not self._lock.acquire(timeout=-1 if wait is None else wait):
            LOG.error('xen: domain %d: the monitor ring is busy; not served', self.domid)
            return 0
        try:
            if self.ring is None or self.broken:
                return 0
            answered = 0
            try:
                for _ in range(self.MAX_PASSES):
                    pending = self.ring.unconsumed_requests()
                    if not pending:
                        if not self.ring.final_check():
                            break
                        continue
                    for _ in range(pending):
                        self.ring.put_response(self._handle(self.ring.get_request()))
                    answered += pending
                    self.ring.push_responses()
                    self._libs.evtchn.xenevtchn_notify(self._xce, self.local_port)
            except CorruptRing as exc:
                self.broken = str(exc)
                LOG.error('xen: domain %d: %s; no longer serving it (vCPUs that write '
                          'stay paused until the snapshot ends)', self.domid, exc)
            self.handled += answered
            return answered
        finally:
            self._lock.release()

    def _wanted(self, req):
        """Is ``req`` a write to a RAM page of our view (the only event acted on)?"""
        if req.version != VM_EVENT_INTERFACE_VERSION \
                or req.reason != VM_EVENT_REASON_MEM_ACCESS \
                or not req.u.mem_access.flags & MEM_ACCESS_W:
            return False
        if req.flags & VM_EVENT_FLAG_ALTERNATE_P2M and req.altp2m_idx != self.view:
            return False
        gfn = req.u.mem_access.gfn
        return gfn < self.memory.limit and self.memory.contains(gfn << PAGE_SHIFT, PAGE_SIZE)

    def _handle(self, req):
        """The response to ``req``, after copying and lifting its page if it is a write."""
        rsp = response_to(req)
        try:
            if not self._wanted(req):
                self.ignored += 1
                return rsp
            gfn = req.u.mem_access.gfn
            self.memory.preserve(gfn)
            if not self._lift(gfn) and rsp.flags & VM_EVENT_FLAG_VCPU_PAUSED:
                rsp.flags |= VM_EVENT_FLAG_EMULATE
        except Exception:
            self.errors += 1
            LOG.exception('xen: domain %d: a monitor request could not be handled; '
                          'answered anyway', self.domid)
        return rsp

    def _lift(self, gfn):
        """Make ``gfn`` rwx in the view: the guest's later writes to it run free."""
        try:
            self._driver.ctrl_call('xc_altp2m_set_mem_access', self.domid, self.view, gfn,
                                   xenlibs.XENMEM_access_rwx)
        except base.DriverError as exc:
            self.lift_failures += 1
            if self.lift_failures <= self.MAX_LOGGED:
                LOG.warning('%s: gfn 0x%x stays write-protected; its writes are emulated',
                            exc, gfn)
            return False
        return True

    # -- teardown ------------------------------------------------------------------------
    def stop(self):
        """Stop the thread, answer what is left, disable the ring, release the channel.

        Call with the domain paused and the vCPUs back on the host view: the requests
        still on the ring are answered (so no vCPU stays paused on one) before
        ``xc_monitor_resume`` makes Xen take the responses and ``xc_monitor_disable``
        removes the ring.  Failures are logged; everything is still released.
        """
        self._stopping.set()
        if self._wake is not None:
            os.write(self._wake[1], b'x')
        stuck = False
        if self._thread is not None:
            self._thread.join(JOIN_SECONDS)
            stuck = self._thread.is_alive()
            if stuck:
                LOG.error('xen: domain %d: the monitor thread did not stop; its ring '
                          'page is left mapped', self.domid)
        try:
            self.service(wait=JOIN_SECONDS)
        except Exception:
            LOG.exception('xen: domain %d: draining the monitor ring failed', self.domid)
        self._quietly('xc_monitor_resume')
        self._release(keep_page=stuck)

    def _release(self, keep_page=False):
        """Disable the ring, unmap it (unless a stuck thread may still touch it), unbind."""
        if self.ring_page:
            self._quietly('xc_monitor_disable')
            if not keep_page:
                self._libs.munmap(self.ring_page, PAGE_SIZE)
            self.ring_page = None
            self.ring = None
        evtchn = self._libs.evtchn
        if self.local_port is not None:
            if evtchn.xenevtchn_unbind(self._xce, self.local_port) < 0:
                LOG.error('xen: domain %d: xenevtchn_unbind failed (errno %d)', self.domid,
                          self._libs.errno())
            self.local_port = None
        if self._xce:
            evtchn.xenevtchn_close(self._xce)
            self._xce = None
        if self._wake is not None and not keep_page:
            for fd in self._wake:
                os.close(fd)
            self._wake = None

    def _quietly(self, name):
        try:
            self._driver.ctrl_call(name, self.domid)
        except base.DriverError as exc:
            LOG.error('%s', exc)

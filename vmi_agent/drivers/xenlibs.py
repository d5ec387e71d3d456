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

"""ctypes bindings to the Xen 4.17 tool libraries the ``xen`` driver calls.

Only the functions the driver uses are bound, each with ``argtypes``/``restype`` copied
from Debian bookworm's ``libxen-dev`` headers (``xenctrl.h``, ``xenforeignmemory.h``,
``xenstore.h``, ``xenevtchn.h``, ``xen/domctl.h``, ``xen/memory.h``).  :class:`XenLibs`
is the whole C boundary of the driver: the driver calls ``libs.ctrl.xc_*``,
``libs.fmem.xenforeignmemory_*``, ``libs.store.xs_*``, ``libs.evtchn.xenevtchn_*``,
``libs.free``, ``libs.munmap`` and ``libs.errno()`` and nothing else, so the unit tests
can stand a call recorder in its place (the hypervisor cannot run on the test machines).

libxenevtchn is optional: only the copy-before-write snapshot needs it (for the
vm_event monitor ring).  When it cannot be loaded ``libs.evtchn`` is None and
``libs.evtchn_error`` says why; the other three are required.

Out-parameters are passed as ctypes instances (``c_uint16()``, arrays); with ``argtypes``
declared as pointers ctypes passes them by reference.
"""

import ctypes
import ctypes.util

from vmi_agent.drivers.base import DriverError

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

#: ``typedef unsigned long xen_pfn_t`` (xen/arch-x86/xen.h).
xen_pfn_t = ctypes.c_ulong
#: ``typedef uint16_t domid_t`` (xen/xen.h).
domid_t = ctypes.c_uint16
#: ``xenmem_access_t`` is a C enum: an int.
xenmem_access_t = ctypes.c_int

# xenmem_access_t values (xen/memory.h).
XENMEM_access_n = 0
XENMEM_access_r = 1
XENMEM_access_rw = 3
XENMEM_access_rx = 5
XENMEM_access_rwx = 7
XENMEM_access_rx2rw = 8     # r-x until the first write, then r-w (no listener needed)
XENMEM_access_default = 10

# struct xen_domctl_getdomaininfo.flags (xen/domctl.h, XEN_DOMCTL_INTERFACE_VERSION 0x15).
XEN_DOMINF_dying = 1 << 0
XEN_DOMINF_hvm_guest = 1 << 1
XEN_DOMINF_shutdown = 1 << 2
XEN_DOMINF_paused = 1 << 3
XEN_DOMINF_hap = 1 << 8

PROT_READ = 0x1
XBT_NULL = 0
XS_OPEN_READONLY = 1 << 0

LIBXENCTRL = 'libxenctrl.so.4.17'
LIBXENFOREIGNMEMORY = 'libxenforeignmemory.so.1'
LIBXENSTORE = 'libxenstore.so.4'
LIBXENEVTCHN = 'libxenevtchn.so.1'


class ArchDomainConfig(ctypes.Structure):
    """``struct xen_arch_domainconfig`` for x86 (xen/arch-x86/xen.h)."""

    _fields_ = [('emulation_flags', ctypes.c_uint32),
                ('misc_flags', ctypes.c_uint32)]


class DomainInfo(ctypes.Structure):
    """``xc_domaininfo_t``, i.e. ``struct xen_domctl_getdomaininfo`` (xen/domctl.h, 4.17).

    ``handle`` is the domain's 16-byte UUID, set by the toolstack at creation: the Nova
    instance UUID for a Nova guest.
    """

    _fields_ = [('domain', domid_t),
                ('pad1', ctypes.c_uint16),
                ('flags', ctypes.c_uint32),
                ('tot_pages', ctypes.c_uint64),
                ('max_pages', ctypes.c_uint64),
                ('outstanding_pages', ctypes.c_uint64),
                ('shr_pages', ctypes.c_uint64),
                ('paged_pages', ctypes.c_uint64),
                ('shared_info_frame', ctypes.c_uint64),
                ('cpu_time', ctypes.c_uint64),
                ('nr_online_vcpus', ctypes.c_uint32),
                ('max_vcpu_id', ctypes.c_uint32),
                ('ssidref', ctypes.c_uint32),
                ('handle', ctypes.c_uint8 * 16),
                ('cpupool', ctypes.c_uint32),
                ('gpaddr_bits', ctypes.c_uint8),
                ('pad2', ctypes.c_uint8 * 7),
                ('arch_config', ArchDomainConfig)]


_P = ctypes.POINTER
_VP = ctypes.c_void_p
_U16, _U32, _INT, _UINT = ctypes.c_uint16, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint

#: name -> (restype, argtypes), from xenctrl.h (4.17).
CTRL_FUNCTIONS = {
    'xc_interface_open': (_VP, [_VP, _VP, _UINT]),
    'xc_interface_close': (_INT, [_VP]),
    'xc_domain_getinfolist': (_INT, [_VP, _U32, _UINT, _P(DomainInfo)]),
    'xc_domain_pause': (_INT, [_VP, _U32]),
    'xc_domain_unpause': (_INT, [_VP, _U32]),
    'xc_domain_maximum_gpfn': (_INT, [_VP, _U32, _P(xen_pfn_t)]),
    'xc_altp2m_get_domain_state': (_INT, [_VP, _U32, _P(ctypes.c_bool)]),
    'xc_altp2m_set_domain_state': (_INT, [_VP, _U32, ctypes.c_bool]),
    'xc_altp2m_create_view': (_INT, [_VP, _U32, xenmem_access_t, _P(_U16)]),
    'xc_altp2m_destroy_view': (_INT, [_VP, _U32, _U16]),
    'xc_altp2m_switch_to_view': (_INT, [_VP, _U32, _U16]),
    'xc_altp2m_set_mem_access_multi': (_INT, [_VP, _U32, _U16, _P(ctypes.c_uint8),
                                              _P(ctypes.c_uint64), _U32]),
    'xc_altp2m_get_mem_access': (_INT, [_VP, _U32, _U16, xen_pfn_t, _P(xenmem_access_t)]),
    'xc_altp2m_set_mem_access': (_INT, [_VP, _U32, _U16, xen_pfn_t, xenmem_access_t]),
    'xc_altp2m_set_visibility': (_INT, [_VP, _U32, _U16, ctypes.c_bool]),
    # The vm_event monitor ring: enable returns the mapped ring page (NULL on failure)
    # and the event channel port Xen allocated in the domain.
    'xc_monitor_enable': (_VP, [_VP, _U32, _P(_U32)]),
    'xc_monitor_disable': (_INT, [_VP, _U32]),
    'xc_monitor_resume': (_INT, [_VP, _U32]),
}

#: From xenforeignmemory.h.
FMEM_FUNCTIONS = {
    'xenforeignmemory_open': (_VP, [_VP, _UINT]),
    'xenforeignmemory_close': (_INT, [_VP]),
    'xenforeignmemory_map': (_VP, [_VP, _U32, _INT, ctypes.c_size_t, _P(xen_pfn_t),
                                   _P(_INT)]),
    'xenforeignmemory_unmap': (_INT, [_VP, _VP, ctypes.c_size_t]),
}

#: From xenstore.h.  xs_read returns malloc()ed memory: a void pointer, freed with free().
STORE_FUNCTIONS = {
    'xs_open': (_VP, [ctypes.c_ulong]),
    'xs_close': (None, [_VP]),
    'xs_read': (_VP, [_VP, _U32, ctypes.c_char_p, _P(_UINT)]),
}


#: libc's ``int munmap(void *addr, size_t length)``.
MUNMAP_SIGNATURE = (_INT, [_VP, ctypes.c_size_t])

#: From xenevtchn.h; evtchn_port_t is uint32_t, xenevtchn_port_or_error_t an int.
EVTCHN_FUNCTIONS = {
    'xenevtchn_open': (_VP, [_VP, _UINT]),
    'xenevtchn_close': (_INT, [_VP]),
    'xenevtchn_fd': (_INT, [_VP]),
    'xenevtchn_bind_interdomain': (_INT, [_VP, _U32, _U32]),
    'xenevtchn_unbind': (_INT, [_VP, _U32]),
    'xenevtchn_pending': (_INT, [_VP]),
    'xenevtchn_unmask': (_INT, [_VP, _U32]),
    'xenevtchn_notify': (_INT, [_VP, _U32]),
}


def _load(soname, functions):
    lib = ctypes.CDLL(soname, use_errno=True)
    for name, (restype, argtypes) in functions.items():
        func = getattr(lib, name)
        func.restype = restype
        func.argtypes = argtypes
    return lib


class XenLibs:
    """The loaded libraries: ``ctrl``, ``fmem``, ``store``, ``evtchn`` (or None).

    Plus libc's ``free`` and ``munmap`` (the monitor ring page is an mmap of privcmd).
    """

    def __init__(self):
        try:
            self.ctrl = _load(LIBXENCTRL, CTRL_FUNCTIONS)
            self.fmem = _load(LIBXENFOREIGNMEMORY, FMEM_FUNCTIONS)
            self.store = _load(LIBXENSTORE, STORE_FUNCTIONS)
        except (OSError, AttributeError) as exc:
            raise DriverError('xen driver: cannot open the hypervisor interface (is this a '
                              'Xen dom0?): cannot load the Xen 4.17 tool libraries '
                              '(install xen-utils-4.17 / libxen-dev): %s' % exc) from exc
        try:
            self.evtchn = _load(LIBXENEVTCHN, EVTCHN_FUNCTIONS)
            self.evtchn_error = None
        except (OSError, AttributeError) as exc:
            self.evtchn = None
            self.evtchn_error = 'cannot load %s: %s' % (LIBXENEVTCHN, exc)
        libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)
        self.free = libc.free
        self.free.restype = None
        self.free.argtypes = [_VP]
        self.munmap = libc.munmap
        self.munmap.restype = _INT
        self.munmap.argtypes = MUNMAP_SIGNATURE[1]

    @staticmethod
    def errno():
        """errno of the last failed call (the libraries report errors through it)."""
        return ctypes.get_errno()

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

"""The ctypes bindings against the real Xen 4.17 libraries and headers on this machine.

No stand-in here: these tests load Debian's libxenctrl, libxenforeignmemory,
libxenstore and libxenevtchn (packages ``libxen-dev``/``xen-utils-4.17``) with the
declared signatures, compile the headers to check the structure layouts and constants
the bindings copy (``xc_domaininfo_t``; the vm_event request/response and its
``mem_access`` part, the shared ring's header and its number of slots, from
``xen/vm_event.h`` and ``xen/io/ring.h``), and check that, with no hypervisor (the test
machines are not Xen dom0s), the driver fails with its clear error.  Each test is
skipped, with the reason, when the package it needs is not installed.
"""

import ctypes
import os
import re
import shutil
import subprocess

from oslo_config import cfg
import pytest

from vmi_agent.conf import xen as xen_conf
from vmi_agent.drivers import base
from vmi_agent.drivers import xen
from vmi_agent.drivers import xenevents
from vmi_agent.drivers import xenlibs


def _loadable(soname):
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


needs_libs = pytest.mark.skipif(
    not all(_loadable(s) for s in (xenlibs.LIBXENCTRL, xenlibs.LIBXENFOREIGNMEMORY,
                                   xenlibs.LIBXENSTORE, xenlibs.LIBXENEVTCHN)),
    reason='the Xen 4.17 libraries are not installed (apt-get install libxen-dev)')
needs_headers = pytest.mark.skipif(
    not os.path.exists('/usr/include/xenctrl.h') or shutil.which('gcc') is None,
    reason='needs gcc and /usr/include/xenctrl.h (apt-get install libxen-dev)')
not_dom0 = pytest.mark.skipif(
    os.path.exists('/proc/xen/capabilities'),
    reason='this machine runs under Xen; the no-hypervisor error cannot be seen')

FIELDS = [name for name, _ in xenlibs.DomainInfo._fields_]
CONSTANTS = ['XENMEM_access_n', 'XENMEM_access_r', 'XENMEM_access_rw', 'XENMEM_access_rx',
             'XENMEM_access_rwx', 'XENMEM_access_rx2rw', 'XENMEM_access_default',
             'XEN_DOMINF_dying', 'XEN_DOMINF_hvm_guest', 'XEN_DOMINF_shutdown',
             'XEN_DOMINF_paused', 'XEN_DOMINF_hap', 'XBT_NULL', 'XS_OPEN_READONLY']


@needs_libs
def test_real_libraries_load_with_the_declared_signatures():
    libs = xenlibs.XenLibs()
    assert libs.evtchn is not None and libs.evtchn_error is None, 'libxenevtchn loads'
    for lib, table in ((libs.ctrl, xenlibs.CTRL_FUNCTIONS),
                       (libs.fmem, xenlibs.FMEM_FUNCTIONS),
                       (libs.store, xenlibs.STORE_FUNCTIONS),
                       (libs.evtchn, xenlibs.EVTCHN_FUNCTIONS)):
        for name, (restype, argtypes) in table.items():
            func = getattr(lib, name)
            assert func.restype is restype and func.argtypes == argtypes, \
                '%s carries the declared signature' % name


@needs_headers
def test_struct_layout_and_constants_match_the_4_17_headers(tmp_path):
    lines = ['#include <stddef.h>', '#include <stdio.h>', '#include <xenctrl.h>',
             '#include <xenstore.h>', 'int main(void) {',
             '  printf("size %zu\\n", sizeof(xc_domaininfo_t));']
    lines += ['  printf("%s %%zu\\n", offsetof(xc_domaininfo_t, %s));' % (f, f)
              for f in FIELDS]
    lines += ['  printf("%s %%lu\\n", (unsigned long)(%s));' % (c, c) for c in CONSTANTS]
    lines += ['  return 0;', '}']
    src = tmp_path / 'layout.c'
    src.write_text('\n'.join(lines) + '\n')
    exe = tmp_path / 'layout'
    subprocess.run(['gcc', '-o', str(exe), str(src)], check=True, capture_output=True)
    out = dict(line.split() for line in subprocess.run(
        [str(exe)], check=True, capture_output=True, text=True).stdout.splitlines())
    assert int(out['size']) == ctypes.sizeof(xenlibs.DomainInfo), \
        'DomainInfo is as large as xc_domaininfo_t'
    for field in FIELDS:
        assert int(out[field]) == getattr(xenlibs.DomainInfo, field).offset, \
            'DomainInfo.%s is at the header\'s offset' % field
    for name in CONSTANTS:
        assert int(out[name]) == getattr(xenlibs, name), '%s matches the header' % name


@needs_libs
@not_dom0
def test_driver_without_a_hypervisor_raises_the_clear_error():
    conf = cfg.ConfigOpts()
    xen_conf.register_opts(conf)
    conf([])
    with pytest.raises(base.DriverError) as err:
        xen.XenDriver(conf)
    assert str(err.value).startswith('xen driver: cannot open the hypervisor interface '
                                     '(is this a Xen dom0?)'), 'an operator learns why'


#: (ctypes structure, C type, fields, C size) checked against the headers.
EVENT_STRUCTS = [
    (xenevents.VmEvent, 'vm_event_request_t',
     ['version', 'flags', 'reason', 'vcpu_id', 'altp2m_idx', 'u', 'data'],
     ctypes.sizeof(xenevents.VmEvent)),
    (xenevents.VmEvent, 'vm_event_response_t',
     ['version', 'flags', 'reason', 'vcpu_id', 'altp2m_idx', 'u', 'data'],
     ctypes.sizeof(xenevents.VmEvent)),
    (xenevents.MemAccess, 'struct vm_event_mem_access',
     ['gfn', 'offset', 'gla', 'flags'], ctypes.sizeof(xenevents.MemAccess)),
    # sizeof(vm_event_sring_t) counts its declared ring[1]: the header plus one slot.
    (xenevents.SharedRingHeader, 'vm_event_sring_t',
     ['req_prod', 'req_event', 'rsp_prod', 'rsp_event', 'pvt'],
     ctypes.sizeof(xenevents.SharedRingHeader) + ctypes.sizeof(xenevents.VmEvent)),
]
EVENT_CONSTANTS = ['VM_EVENT_INTERFACE_VERSION', 'VM_EVENT_FLAG_VCPU_PAUSED',
                   'VM_EVENT_FLAG_EMULATE', 'VM_EVENT_FLAG_ALTERNATE_P2M',
                   'VM_EVENT_REASON_MEM_ACCESS', 'MEM_ACCESS_R', 'MEM_ACCESS_W',
                   'MEM_ACCESS_X']


@needs_headers
def test_vm_event_and_ring_layouts_match_the_4_17_headers(tmp_path):
    lines = ['#include <stddef.h>', '#include <stdio.h>', '#include <string.h>',
             '#include <xenctrl.h>', '#include <xen/vm_event.h>',
             'static char page[%d];' % xenevents.PAGE_SIZE, 'int main(void) {',
             '  vm_event_back_ring_t back;',
             '  SHARED_RING_INIT((vm_event_sring_t *)page);',
             '  BACK_RING_INIT(&back, (vm_event_sring_t *)page, %d);' % xenevents.PAGE_SIZE,
             '  printf("ring_size %u\\n", RING_SIZE(&back));',
             '  printf("ring_offset %zu\\n", offsetof(vm_event_sring_t, ring));',
             '  printf("entry_size %zu\\n", sizeof(((vm_event_sring_t *)0)->ring[0]));',
             '  printf("u_mem_access %zu\\n", offsetof(vm_event_request_t, u.mem_access));',
             '  printf("req_event_init %u\\n", ((vm_event_sring_t *)page)->req_event);']
    for _, ctype, fields, _ in EVENT_STRUCTS:
        key = ctype.replace(' ', '_')
        lines.append('  printf("%s.size %%zu\\n", sizeof(%s));' % (key, ctype))
        lines += ['  printf("%s.%s %%zu\\n", offsetof(%s, %s));' % (key, f, ctype, f)
                  for f in fields]
    lines += ['  printf("%s %%lu\\n", (unsigned long)(%s));' % (c, c)
              for c in EVENT_CONSTANTS]
    lines += ['  return 0;', '}']
    src = tmp_path / 'events.c'
    src.write_text('\n'.join(lines) + '\n')
    exe = tmp_path / 'events'
    subprocess.run(['gcc', '-o', str(exe), str(src)], check=True, capture_output=True)
    out = dict(line.split() for line in subprocess.run(
        [str(exe)], check=True, capture_output=True, text=True).stdout.splitlines())
    for struct, ctype, fields, size in EVENT_STRUCTS:
        key = ctype.replace(' ', '_')
        assert int(out[key + '.size']) == size, \
            '%s is as large as %s' % (struct.__name__, ctype)
        for field in fields:
            assert int(out['%s.%s' % (key, field)]) == getattr(struct, field).offset, \
                '%s.%s is at the offset of %s.%s' % (struct.__name__, field, ctype, field)
    assert int(out['ring_size']) == xenevents.ring_size(), 'the ring has as many slots'
    assert int(out['ring_offset']) == ctypes.sizeof(xenevents.SharedRingHeader), \
        'the slots start right after the header'
    assert int(out['entry_size']) == ctypes.sizeof(xenevents.VmEvent), \
        'a slot is one request/response'
    assert int(out['u_mem_access']) == xenevents.VmEvent.u.offset, 'mem_access is u'
    assert int(out['req_event_init']) == 1, 'SHARED_RING_INIT arms req_event at 1'
    for name in EVENT_CONSTANTS:
        assert int(out[name]) == getattr(xenevents, name), '%s matches the header' % name
    assert int(out['VM_EVENT_INTERFACE_VERSION']) == 7, 'Xen 4.17 speaks version 7'


def test_missing_libxenevtchn_leaves_the_others_usable(monkeypatch):
    if not all(_loadable(s) for s in (xenlibs.LIBXENCTRL, xenlibs.LIBXENFOREIGNMEMORY,
                                      xenlibs.LIBXENSTORE)):
        pytest.skip('the Xen 4.17 libraries are not installed (apt-get install libxen-dev)')
    monkeypatch.setattr(xenlibs, 'LIBXENEVTCHN', 'libxenevtchn-not-here.so.0')
    libs = xenlibs.XenLibs()
    assert libs.evtchn is None and 'libxenevtchn-not-here' in libs.evtchn_error, \
        'no event channel library, and the reason is kept for the fallback log line'
    assert libs.ctrl is not None and libs.munmap.argtypes == xenlibs.MUNMAP_SIGNATURE[1]


def test_missing_libraries_are_a_driver_error(monkeypatch):
    monkeypatch.setattr(xenlibs, 'LIBXENCTRL', 'libxenctrl-not-here.so.0')
    with pytest.raises(base.DriverError) as err:
        xenlibs.XenLibs()
    assert 'install xen-utils-4.17' in str(err.value), 'the error says what to install'


def _prototype_params(header, name):
    """The parameter list of ``name``'s prototype in ``header``, split at commas."""
    with open(header) as f:
        text = re.sub(r'/\*.*?\*/', '', f.read(), flags=re.S)
    match = re.search(r'\b%s\s*\(([^)]*)\)\s*;' % name, text)
    assert match, '%s is declared in %s' % (name, header)
    return [p.strip() for p in match.group(1).split(',')]


def _is_pointer(argtype):
    return argtype in (ctypes.c_void_p, ctypes.c_char_p) or hasattr(argtype, '_type_') \
        and isinstance(argtype._type_, type)


@pytest.mark.parametrize('header,table', [
    ('/usr/include/xenctrl.h', xenlibs.CTRL_FUNCTIONS),
    ('/usr/include/xenforeignmemory.h', xenlibs.FMEM_FUNCTIONS),
    ('/usr/include/xenstore.h', xenlibs.STORE_FUNCTIONS),
    ('/usr/include/xenevtchn.h', xenlibs.EVTCHN_FUNCTIONS),
])
def test_declared_argtypes_follow_the_header_prototypes(header, table):
    if not os.path.exists(header):
        pytest.skip('%s is not installed (apt-get install libxen-dev)' % header)
    for name, (_, argtypes) in table.items():
        params = _prototype_params(header, name)
        assert len(params) == len(argtypes), '%s takes %d parameters' % (name, len(params))
        for param, argtype in zip(params, argtypes):
            assert _is_pointer(argtype) == ('*' in param or '[' in param), \
                '%s: %r is passed as %s' % (name, param, argtype.__name__)

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

No stand-in here: these tests load Debian's libxenctrl, libxenforeignmemory and
libxenstore (packages ``libxen-dev``/``xen-utils-4.17``) with the declared signatures,
compile the headers to check the structure layout and constants the bindings copy, and
check that, with no hypervisor (the test machines are not Xen dom0s), the driver fails
with its clear error.  Each test is skipped, with the reason, when the package it needs
is not installed.
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
from vmi_agent.drivers import xenlibs


def _loadable(soname):
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


needs_libs = pytest.mark.skipif(
    not all(_loadable(s) for s in (xenlibs.LIBXENCTRL, xenlibs.LIBXENFOREIGNMEMORY,
                                   xenlibs.LIBXENSTORE)),
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
    for lib, table in ((libs.ctrl, xenlibs.CTRL_FUNCTIONS),
                       (libs.fmem, xenlibs.FMEM_FUNCTIONS),
                       (libs.store, xenlibs.STORE_FUNCTIONS)):
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

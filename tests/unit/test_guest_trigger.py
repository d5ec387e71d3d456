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

"""Tests for the guest trigger program, guest/vmi-trigger.c, run on this host.

The host is not a patched Xen guest: VMFUNC with the VMI leaf must raise #UD here (VMFUNC
is an Intel VT-x instruction that faults outside VMX non-root operation, on AMD CPUs, and
under KVM, which enables no VM functions for its own guests), and the program must turn
that into a clear message and exit status 3.  The port mode is never run with I/O
permission on the host: only its failure without permission is checked.
"""

import os
import shutil
import struct
import subprocess

import pytest

from tools.testbed import assets as testbed_assets

USAGE_ERRORS = [
    ['--bogus'],
    ['--port'],
    ['--port', '0x10000'],
    ['--port', 'x402'],
    ['--vmfunc', '--rdtsc'],
    ['--port', '0x402', '--vmfunc'],
    ['--port', '0x402', '1', '2'],
    ['--vmfunc', '1', '2', '3', '4', '5'],
    ['--rdtsc', '1', '2', '3', '4'],
    ['--rdtsc', '-1'],
    ['--vmfunc', 'T'],
    ['0x5a', '0x5b'],
]


@pytest.fixture(scope='module')
def trigger(tmp_path_factory):
    if shutil.which('gcc') is None or shutil.which('make') is None:
        pytest.skip('gcc and make are needed to build guest/vmi-trigger')
    return testbed_assets.build_trigger(tmp_path_factory.mktemp('trigger') / 'vmi-trigger')


def _run(trigger, *args, **kwargs):
    return subprocess.run([str(trigger), *args], capture_output=True, text=True,
                          timeout=10, check=False, **kwargs)


def test_binary_is_small_and_static(trigger):
    data = trigger.read_bytes()
    assert data[:4] == b'\x7fELF'
    assert len(data) < 1 << 20
    phoff, = struct.unpack_from('<Q', data, 0x20)
    phentsize, phnum = struct.unpack_from('<HH', data, 0x36)
    types = [struct.unpack_from('<I', data, phoff + i * phentsize)[0] for i in range(phnum)]
    assert 3 not in types               # PT_INTERP: no dynamic loader needed in the guest
    assert 2 not in types               # PT_DYNAMIC


@pytest.mark.parametrize('args', USAGE_ERRORS, ids=' '.join)
def test_usage_errors_exit_2_with_one_line(trigger, args):
    proc = _run(trigger, *args)
    assert proc.returncode == 2
    assert proc.stdout == ''
    assert proc.stderr.endswith('\n') and proc.stderr.count('\n') == 1
    assert proc.stderr.startswith('vmi-trigger: ')
    assert 'usage: vmi-trigger [--vmfunc | --rdtsc | --port P] [ARG ...]' in proc.stderr


@pytest.mark.parametrize('args', [[], ['1'], ['1', '2', '3', '0xffffffffffffffff']],
                         ids=repr)
def test_vmfunc_without_patched_hypervisor_exits_3(trigger, args):
    proc = _run(trigger, '--vmfunc', *args)
    assert proc.returncode == 3, proc
    assert proc.stdout == ''
    assert proc.stderr == ('vmi-trigger: VMFUNC raised #UD (SIGILL): no hypervisor here '
                           'handles VMI leaf 0x3f\n')


@pytest.mark.parametrize('args', [[], ['7', '8', '9']], ids=repr)
def test_rdtsc_is_silent_and_succeeds(trigger, args):
    proc = _run(trigger, '--rdtsc', *args)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, '', '')


def _drop_privileges():
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


def test_port_without_permission_exits_1(trigger, tmp_path):
    # As root, run as nobody: ioperm() must fail (no CAP_SYS_RAWIO), no outb is done.
    # A world-readable copy, since nobody may not reach pytest's temporary directory.
    exe = shutil.copy(trigger, '/tmp/vmi-trigger-%d' % os.getpid())
    try:
        os.chmod(exe, 0o755)
        preexec = _drop_privileges if os.geteuid() == 0 else None
        for args in (['--port', '0x402', '0x5a'], ['--port', '0x1000']):
            proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=10,
                                  check=False, preexec_fn=preexec)
            assert proc.returncode == 1, proc
            # iopl() may be missing altogether (ENOSYS) on a kernel without
            # CONFIG_X86_IOPL_IOPERM, as on this project's hosts.
            assert proc.stderr in ('vmi-trigger: no permission for the I/O port: %s\n' % why
                                   for why in ('Operation not permitted',
                                               'Function not implemented'))
    finally:
        os.unlink(exe)

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

"""The guest test bed tells the truth.

Every functional test of the engine compares what it reads from guest memory with what the
test bed says the guest holds, so the test bed itself is checked here against independent
evidence: the guest's /proc and /dev/mem, QEMU's dump files, the RAM file.
"""

import socket
import struct
import time

import pytest

from tools.testbed import assets as testbed_assets
from tools.testbed.guest import (KERNEL_ARGS, GuestCommandError, GuestError,
                                 GuestTimeoutError)
from vmi_agent.drivers.qmp import QMPCommandError, QMPTimeoutError


def _elf_segments(path):
    """(p_type, p_offset, p_filesz) of each program header of an ELF64 file."""
    with open(path, 'rb') as f:
        header = f.read(64)
        phoff, = struct.unpack_from('<Q', header, 0x20)
        phentsize, phnum = struct.unpack_from('<HH', header, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return header, [struct.unpack_from('<IIQQQQQQ', table, i * phentsize)
                    for i in range(phnum)]


def test_assets_are_cached_and_leaf_modules(guest):
    started = time.monotonic()
    assets = testbed_assets.ensure_assets(guest.assets.flavour)
    assert time.monotonic() - started < 0.5
    assert assets == guest.assets
    assert assets.vmlinuz.stat().st_size > 1 << 20
    for name in assets.test_modules:
        path = testbed_assets.find_modules(assets.modules_dir, [name])[name]
        assert testbed_assets.modinfo(path).get('depends', '') == ''


def test_guest_runs_the_debian_kernel(guest):
    assert guest.run('uname -r').strip() == guest.release
    assert guest.ram_path.stat().st_size == guest.memory_mb << 20
    assert guest.run('cat /proc/cmdline').split() == KERNEL_ARGS.split()     # KASLR on


def test_run_frames_output_exactly(guest):
    tricky = 'a\r\nb\x01VMI c\n\tno newline at the end'
    assert guest.run("printf 'a\\r\\nb\\001VMI c\\n\\tno newline at the end'") == tricky
    result = guest.run_status('echo out; echo err >&2; exit 3')
    assert (result.status, result.stdout, result.stderr) == (3, 'out\n', 'err\n')
    with pytest.raises(GuestCommandError) as info:
        guest.run('echo why >&2; false')
    assert info.value.result.status == 1 and 'why' in str(info.value)
    for i in range(20):
        assert guest.run('echo %d' % i) == '%d\n' % i


def test_run_carries_a_few_hundred_kilobytes(guest):
    line = '0123456789abcdef\n'
    out = guest.run('yes 0123456789abcdef | head -n 20000', timeout=60)
    assert out == line * 20000


def test_timeout_interrupts_and_the_shell_recovers(guest):
    with pytest.raises(GuestTimeoutError):
        guest.run('sleep 30', timeout=1)
    assert guest.run('echo alive') == 'alive\n'
    assert 'sleep' not in guest.processes().values()


def test_spawn_and_stop_show_in_processes(guest):
    before = guest.user_processes()
    pids = guest.spawn('vmi-victim', 3)
    try:
        after = guest.processes()
        assert {pid: after[pid] for pid in pids} == dict.fromkeys(pids, 'vmi-victim')
        assert not set(pids) & set(before)
        assert guest.user_processes() == {**before, **dict.fromkeys(pids, 'vmi-victim')}
        guest.stop(pids[0])
        now = guest.processes()
        assert pids[0] not in now and all(pid in now for pid in pids[1:])
    finally:
        guest.stop_spawned()
    assert guest.user_processes() == before
    assert ') Z ' not in guest.run_status('cat /proc/[0-9]*/stat').stdout     # no zombie


def test_processes_sees_kernel_threads(guest):
    everything, users = guest.processes(), guest.user_processes()
    assert everything[1] == 'init' and everything[2] == 'kthreadd'
    assert 2 not in users and 1 in users
    assert any(comm.startswith('ksoftirqd/') for comm in everything.values())
    assert not any('-' in c for c in everything.values() if c.startswith('kworker/'))


def test_spawn_many_in_one_go(guest):
    before = guest.user_processes()
    pids = guest.spawn('vmi-many', 100)
    try:
        assert len(set(pids)) == 100
        assert sorted(p for p, c in guest.processes().items() if c == 'vmi-many') == sorted(pids)
    finally:
        guest.stop(*pids)
    assert guest.user_processes() == before


def test_insmod_and_rmmod_show_in_modules(guest):
    assert 'qemu_fw_cfg' in guest.modules()         # loaded by /init
    assert set(guest.assets.test_modules) <= set(guest.available_modules())
    before = guest.modules()
    for name in guest.assets.test_modules:
        guest.insmod(name)
        try:
            assert guest.modules()[name] > 0
            assert guest.module_states()[name] == 'Live'
        finally:
            guest.rmmod(name)
        assert name not in guest.modules()
    assert guest.modules() == before


def test_pause_and_resume(guest):
    guest.qmp.events()
    guest.pause()
    try:
        assert not guest.running()
        with pytest.raises(GuestError, match='paused'):
            guest.run('true')
    finally:
        guest.resume()
    assert guest.running()
    assert [e['event'] for e in guest.qmp.events()][-2:] == ['STOP', 'RESUME']
    assert guest.run('echo back') == 'back\n'


def test_elf_dump_has_all_ram_and_vmcoreinfo(guest, tmp_path):
    path = guest.dump(tmp_path / 'guest.elf')
    header, segments = _elf_segments(path)
    assert header[:5] == b'\x7fELF\x02'
    assert struct.unpack_from('<HH', header, 16) == (4, 0x3e)      # ET_CORE, x86-64
    # PT_LOAD: all of RAM from physical 0 up, and the BIOS ROM just below 4 GiB.
    loads = sorted((s[4], s[5]) for s in segments if s[0] == 1)
    assert loads[0] == (0, guest.memory_mb << 20)
    assert all(paddr >= 0xfff00000 for paddr, _ in loads[1:])
    notes = [s for s in segments if s[0] == 4]
    with open(path, 'rb') as f:
        f.seek(notes[0][2])
        note = f.read(notes[0][5])
    assert b'VMCOREINFO' in note
    assert b'OSRELEASE=%s\n' % guest.release.encode() in note
    assert b'KERNELOFFSET=' in note
    assert guest.running()


def test_raw_dump_is_the_ram_file(guest, tmp_path):
    path = guest.dump(tmp_path / 'guest.raw', fmt='raw')
    assert path.stat().st_size == guest.memory_mb << 20
    assert b'OSRELEASE=%s\n' % guest.release.encode() in path.read_bytes()
    assert guest.running()
    with pytest.raises(ValueError):
        guest.dump(tmp_path / 'x', fmt='qcow2')


def test_write_u64_is_seen_by_the_guest(guest):
    # Physical page 0 (real-mode IVT and BIOS data) is reserved, never allocated, and the
    # one low page that STRICT_DEVMEM still lets the guest read through /dev/mem.
    page0 = guest.read(0, 4096)
    dumped = guest.run('dd if=/dev/mem bs=4096 count=1 2>/dev/null | od -An -tx1 -v')
    assert bytes.fromhex(dumped.replace('\n', '')) == page0
    scratch = max(o for o in range(0x500, 0x1000, 8) if page0[o:o + 8] == bytes(8))
    read_back = 'dd if=/dev/mem bs=8 skip=%d count=1 2>/dev/null | od -An -tx8' % (scratch // 8)
    try:
        guest.write_u64(scratch, 0x1122334455667788)
        assert guest.read(scratch, 8) == bytes.fromhex('8877665544332211')
        assert guest.run(read_back).split() == ['1122334455667788']
    finally:
        guest.write_u64(scratch, 0)
    assert guest.run(read_back).split() == ['0000000000000000']
    with pytest.raises(ValueError):
        guest.write_u64(scratch + 4, 0)
    with pytest.raises(ValueError):
        guest.read((guest.memory_mb << 20) - 4, 8)


def test_trigger_writes_to_the_debug_port(guest):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(guest.debugcon_path))
        sock.settimeout(10)
        guest.trigger(b'Z')
        assert sock.recv(16) == b'Z'


def test_qmp_client_reports_errors(guest):
    assert guest.qmp.version >= (7, 0, 0)
    with pytest.raises(QMPCommandError) as info:
        guest.qmp.execute('no-such-command')
    assert info.value.error_class == 'CommandNotFound'
    with pytest.raises(QMPTimeoutError):
        guest.qmp.execute('query-status', timeout=0)
    # The late reply to the timed-out command is told apart by its id.
    assert guest.qmp.execute('query-name') == {}
    assert guest.qmp.execute('query-status')['running'] is True

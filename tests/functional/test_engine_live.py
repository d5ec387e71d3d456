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

"""The engine against a live Debian guest: what it reads must be what the guest says.

One guest for the module (processes and modules are started and stopped by the tests,
each undoing its own changes).  The guest's own truth comes from its serial shell
(``/proc``); the engine's view comes from the RAM file while the guest runs, and from
ELF and raw dumps of it.
"""

import json
import subprocess
import sys

import pytest

from vmi_agent.engine import probes
from vmi_agent.engine.attach import attach
from vmi_agent.engine.memory import open_memory


@pytest.fixture(scope='module')
def profile_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp('profiles'))


def inspect(guest, profile_dir, names, path=None, fmt='auto', vmlinux=True):
    with open_memory(path or guest.ram_path, fmt) as memory:
        kernel = attach(memory, vmlinux=guest.vmlinuz if vmlinux else None,
                        profile_dir=profile_dir)
        results, _ = probes.run_probes(kernel, names)
    for name, result in results.items():
        assert result.error is None, '%s failed: %s' % (name, result.error)
    return kernel, results


def user_view(result):
    return {r['pid']: r['comm'] for r in result.records if not r['kernel_thread']}


def test_pslist_equals_the_guests_user_processes(guest, profile_dir):
    truth = guest.user_processes()
    kernel, results = inspect(guest, profile_dir, ['pslist'])
    assert kernel.release == guest.release
    assert user_view(results['pslist']) == truth


def test_pslist_records_are_complete_and_consistent(guest, profile_dir):
    _, results = inspect(guest, profile_dir, ['pslist'])
    records = {r['pid']: r for r in results['pslist'].records}
    assert records[1]['comm'] == 'init' and records[1]['ppid'] == 0
    assert records[2]['comm'] == 'kthreadd' and records[2]['kernel_thread']
    for r in records.values():
        assert r['tgid'] == r['pid']                     # the task list holds leaders
        assert r['ppid'] in records or r['ppid'] == 0
        assert r['uid'] == 0                             # the test bed runs as root
    threads = {pid for pid, comm in guest.processes().items()
               if pid not in guest.user_processes() and not comm.startswith('kworker')}
    assert threads <= set(records)                      # kworkers come and go


def test_pslist_follows_processes_started_and_stopped(guest, profile_dir):
    pids = guest.spawn('vmi-canary', 3)
    try:
        seen = user_view(inspect(guest, profile_dir, ['pslist'])[1]['pslist'])
        assert {pid: seen.get(pid) for pid in pids} == {pid: 'vmi-canary' for pid in pids}
        assert seen == guest.user_processes()
        guest.stop(pids[0])
        seen = user_view(inspect(guest, profile_dir, ['pslist'])[1]['pslist'])
        assert pids[0] not in seen and pids[1] in seen
        assert seen == guest.user_processes()
    finally:
        guest.stop_spawned()
    seen = user_view(inspect(guest, profile_dir, ['pslist'])[1]['pslist'])
    assert not set(pids) & set(seen)


def test_modules_equal_proc_modules_through_insmod_and_rmmod(guest, profile_dir):
    def view():
        result = inspect(guest, profile_dir, ['modules'])[1]['modules']
        assert {r['state'] for r in result.records} == {'live'}
        return {r['name']: r['size'] for r in result.records}

    assert view() == guest.modules()
    loaded = ['crc7', 'cordic']
    for name in loaded:
        guest.insmod(name)
    try:
        assert set(loaded) <= set(view())
        assert view() == guest.modules()
        guest.rmmod('crc7')
        assert 'crc7' not in view() and 'cordic' in view()
        assert view() == guest.modules()
    finally:
        for name in loaded:
            if name in guest.modules():
                guest.rmmod(name)


@pytest.mark.parametrize('fmt', ['elf', 'raw'])
def test_dumps_give_the_same_answers_as_the_live_guest(guest, profile_dir, tmp_path, fmt):
    pids = guest.spawn('vmi-dumped', 2)
    guest.insmod('dummy')
    try:
        truth_procs, truth_mods = guest.user_processes(), guest.modules()
        path = str(tmp_path / ('guest.' + fmt))
        guest.dump(path, fmt)
    finally:
        guest.rmmod('dummy')
        guest.stop(*pids)
    _, results = inspect(guest, profile_dir, ['pslist', 'modules'], path=path, fmt=fmt)
    assert user_view(results['pslist']) == truth_procs
    assert {r['name']: r['size'] for r in results['modules'].records} == truth_mods


def test_no_profile_files_at_all(guest, tmp_path):
    """BTF and kallsyms from guest memory alone; the result is cached for next time."""
    store = str(tmp_path / 'empty-store')
    truth = guest.user_processes()
    kernel, results = inspect(guest, store, ['pslist', 'modules'], vmlinux=False)
    assert kernel.release == guest.release
    assert user_view(results['pslist']) == truth
    assert {r['name'] for r in results['modules'].records} == set(guest.modules())
    again, _ = inspect(guest, store, ['pslist'], vmlinux=False)
    assert again.kaslr_shift == kernel.kaslr_shift


def test_vmi_inspect_json_on_the_live_ram_file(guest, profile_dir):
    out = subprocess.run(
        [sys.executable, '-m', 'vmi_agent.cmd.inspect', '--memory', str(guest.ram_path),
         '--vmlinux', str(guest.vmlinuz), '--profile-dir', profile_dir, '-f', 'json',
         'pslist', 'modules'], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report['profile']['release'] == guest.release
    assert int(report['profile']['kaslr_shift'], 16) % 0x200000 == 0
    assert set(report['probes']) == {'pslist', 'modules'}
    procs = {r['pid']: r['comm'] for r in report['probes']['pslist']['records']
             if not r['kernel_thread']}
    assert procs == guest.user_processes()
    assert report['probes']['modules']['findings'] == []


def test_vmi_inspect_table_is_readable(guest, profile_dir):
    out = subprocess.run(
        [sys.executable, '-m', 'vmi_agent.cmd.inspect', '--memory', str(guest.ram_path),
         '--vmlinux', str(guest.vmlinuz), '--profile-dir', profile_dir, 'pslist'],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith('kernel %s' % guest.release)
    assert 'kthreadd' in out.stdout and 'comm' in out.stdout


def test_first_contact_without_vmcoreinfo(guest):
    """A kernel without crash support has no VMCOREINFO: the banner route finds it."""
    from vmi_agent.engine.linux import builder
    with open_memory(guest.ram_path) as memory:
        profile = builder.from_memory(memory, [], probes.requirements())
    assert profile.release == guest.release
    assert profile.address('init_task') and profile.struct('task_struct').has('comm')


def test_an_operators_system_map_is_used(guest, profile_dir, tmp_path):
    """Symbols from a System.map (here written from the kernel's own kallsyms)."""
    from vmi_agent.engine.linux import builder
    reference = builder.from_image(str(guest.vmlinuz))
    system_map = tmp_path / 'System.map'
    system_map.write_text(''.join('%016x %s %s\n' % entry for entry in reference.symbols))
    out = subprocess.run(
        [sys.executable, '-m', 'vmi_agent.cmd.inspect', '--memory', str(guest.ram_path),
         '--vmlinux', str(guest.vmlinuz), '--system-map', str(system_map),
         '--profile-dir', str(tmp_path / 'p'), '-f', 'json', 'pslist'],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    procs = {r['pid']: r['comm'] for r in json.loads(out.stdout)['probes']['pslist']['records']
             if not r['kernel_thread']}
    assert procs == guest.user_processes()

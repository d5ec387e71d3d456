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

"""Hidden modules on a live guest: a host-side unlink, and a real rootkit module.

The rootkit (``tools/testbed/lkm``) is built for the guest's kernel against Debian's
headers, copied into the guest over the serial console and loaded there: it unlinks
itself from the modules list, and a process from the task list, from inside the kernel.
A self-hidden module cannot be unloaded, so the tests share a guest of their own
(``fresh_guest``) and run in file order: the clean checks first, the rootkit last.
"""

import pytest

from tools.testbed import lkm
from vmi_agent.engine import probes
from vmi_agent.engine.attach import attach
from vmi_agent.engine.memory import open_memory
from vmi_agent.engine.probes.modules import ModuleFields, module_list

ALL_VIEWS = ['list', 'memory', 'sysfs']
LIST_POISON1 = '0xdead000000000100'


@pytest.fixture(scope='module')
def profile_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp('profiles'))


def build_rootkit(guest, name):
    """The rootkit module for the guest's kernel (built once, then cached)."""
    try:
        return lkm.build(guest.release, name)
    except lkm.LkmBuildError as exc:
        pytest.fail('cannot build the test rootkit: %s' % exc)


def probe(guest, profile_dir, *names, check=None):
    """Run probes on the live RAM file; ``check(kernel)`` runs on the same attach."""
    with open_memory(guest.ram_path) as memory:
        kernel = attach(memory, vmlinux=guest.vmlinuz, profile_dir=profile_dir)
        results, _ = probes.run_probes(kernel, names)
        extra = check(kernel) if check else None
    for name, result in results.items():
        assert result.error is None, '%s failed: %s' % (name, result.error)
    return (results, extra) if check else results


def hidden(result):
    return {f.evidence['name']: f for f in result.findings if f.kind == 'hidden_module'}


@pytest.mark.timeout(300)
def test_clean_guest_has_no_hidden_modules(fresh_guest, profile_dir):
    guest = fresh_guest
    for name in guest.assets.test_modules:
        guest.insmod(name)
    try:
        result = probe(guest, profile_dir, 'hidden_modules')['hidden_modules']
        assert result.findings == []
        assert {r['name']: r['views'] for r in result.records} == {
            name: ALL_VIEWS for name in guest.modules()}
    finally:
        for name in guest.assets.test_modules:
            guest.rmmod(name)
    result = probe(guest, profile_dir, 'hidden_modules')['hidden_modules']
    assert result.findings == []
    assert {r['name'] for r in result.records} == set(guest.modules()) == {'qemu_fw_cfg'}


@pytest.mark.timeout(300)
def test_host_side_unlink_from_the_modules_list(fresh_guest, profile_dir):
    """Two aligned 8-byte stores on the neighbours' links, as a rootkit's list_del does."""
    guest = fresh_guest
    guest.insmod('cordic')

    def links(kernel):
        fields = kernel.memo(ModuleFields)
        (addr,) = [a for a, (name, _, _) in module_list(kernel, fields) if name == 'cordic']
        node = addr + fields.list
        nxt, prev = kernel.u64(node), kernel.u64(node + 8)
        return (addr, node, kernel.space.translate(prev), nxt,
                kernel.space.translate(nxt + 8), prev)

    _, (addr, node, prev_next_at, nxt, next_prev_at, prev) = probe(
        guest, profile_dir, 'modules', check=links)
    guest.write_u64(prev_next_at, nxt)          # prev->next = next
    guest.write_u64(next_prev_at, prev)         # next->prev = prev
    try:
        assert 'cordic' not in guest.modules()  # the guest's own /proc/modules
        results = probe(guest, profile_dir, 'modules', 'hidden_modules')
        assert 'cordic' not in {r['name'] for r in results['modules'].records}
        found = hidden(results['hidden_modules'])
        assert set(found) == {'cordic'}
        evidence = found['cordic'].evidence
        assert found['cordic'].severity == 'critical'
        assert evidence['address'] == '0x%x' % addr
        assert evidence['views'] == ['memory', 'sysfs']
        assert evidence['list_next'] == '0x%x' % nxt        # stale: it still points on
    finally:
        guest.write_u64(next_prev_at, node)
        guest.write_u64(prev_next_at, node)
    assert 'cordic' in guest.modules()
    guest.rmmod('cordic')
    assert probe(guest, profile_dir, 'hidden_modules')['hidden_modules'].findings == []


@pytest.mark.timeout(300)
def test_rootkit_module_hides_itself(fresh_guest, profile_dir):
    guest = fresh_guest
    ko = build_rootkit(guest, 'vmi_hide')
    guest.put('/tmp/vmi_hide.ko', ko.read_bytes())
    guest.insmod_file('/tmp/vmi_hide.ko', 'hide_self=1')
    # The guest's own view: gone from /proc/modules, still in /sys/module.
    assert 'vmi_hide' not in guest.modules()
    assert guest.run('cat /sys/module/vmi_hide/parameters/hide_self').strip() == 'Y'
    results = probe(guest, profile_dir, 'modules', 'hidden_modules')
    assert 'vmi_hide' not in {r['name'] for r in results['modules'].records}
    found = hidden(results['hidden_modules'])
    assert set(found) == {'vmi_hide'}
    f = found['vmi_hide']
    assert f.severity == 'critical'
    assert f.evidence['views'] == ['memory', 'sysfs']
    assert f.evidence['list_next'] == LIST_POISON1          # what list_del() leaves
    assert f.evidence['state'] == 'live'


@pytest.mark.timeout(300)
def test_rootkit_module_hides_a_process(fresh_guest, profile_dir):
    """A second instance (another name: the first still holds /sys/module/vmi_hide)."""
    guest = fresh_guest
    ko = build_rootkit(guest, 'vmi_hide2')
    (pid,) = guest.spawn('vmi-ghost')
    try:
        guest.put('/tmp/vmi_hide2.ko', ko.read_bytes())
        guest.insmod_file('/tmp/vmi_hide2.ko', 'hide_self=1 hide_pid=%d' % pid)
        assert guest.processes().get(pid) == 'vmi-ghost'     # /proc still shows it
        names = ['pslist', 'hidden_modules']
        with_tasks = 'hidden_tasks' in probes.available()
        if with_tasks:
            names.append('hidden_tasks')
        results = probe(guest, profile_dir, *names)
        assert pid not in {r['pid'] for r in results['pslist'].records}
        assert 'vmi_hide2' in hidden(results['hidden_modules'])
        if with_tasks:      # another probe; checked only where the tree has it
            pids = {f.evidence.get('pid') for f in results['hidden_tasks'].findings}
            assert pid in pids
    finally:
        # The module left the task's links pointing to itself: it can exit cleanly.
        guest.stop(pid)
    assert pid not in guest.processes()
    assert pid not in {r['pid'] for r in probe(guest, profile_dir, 'pslist')['pslist'].records}

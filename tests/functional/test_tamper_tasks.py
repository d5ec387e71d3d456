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

"""``hidden_tasks`` and ``creds`` against a live guest that the host tampers with.

The host plays the rootkit with aligned 8-byte stores into guest RAM
(``Guest.write_u64``), on the processes the test spawned: it unlinks one from the task
list, detaches one from its pid, points one at ``init_cred``, gives others forged ids
or a forged parent.  The guest keeps running through all of it, and its own ``/proc``
says what it still sees.  Every test puts back what it changed before stopping its
processes (an exiting task with forged links would corrupt the guest's lists), and
checks that the probes are clean again.  The guest is the module's own
(``fresh_guest``): if a restore fails, no other module sees the damage.
"""

import contextlib

import pytest

from tools.testbed.tamper import Tamper, tasks_by_pid
from vmi_agent.engine import probes
from vmi_agent.engine.attach import attach
from vmi_agent.engine.memory import open_memory

USER = 1000


@pytest.fixture(scope='module')
def kernel(fresh_guest, tmp_path_factory):
    profile_dir = str(tmp_path_factory.mktemp('profiles'))
    with open_memory(fresh_guest.ram_path, 'auto') as memory:
        yield attach(memory, vmlinux=fresh_guest.vmlinuz, profile_dir=profile_dir)


def inspect(kernel, *names):
    results, _ = probes.run_probes(kernel, names)
    for name, result in results.items():
        assert result.error is None, '%s failed: %s' % (name, result.error)
    return results


def assert_clean(kernel):
    results = inspect(kernel, 'hidden_tasks', 'creds')
    assert results['hidden_tasks'].findings == []
    assert results['creds'].findings == []


@contextlib.contextmanager
def tampering(guest, kernel, name, count):
    """Spawn ``count`` processes; yield (pids, Tamper); restore, check clean, stop."""
    pids = guest.spawn(name, count)
    tamper = Tamper(guest, kernel)
    try:
        yield pids, tamper
    finally:
        try:
            tamper.restore()
        finally:
            guest.stop(*pids)
    assert_clean(kernel)


def test_clean_guest_has_no_findings(fresh_guest, kernel):
    results = inspect(kernel, 'hidden_tasks', 'creds', 'pslist')
    assert results['hidden_tasks'].findings == []
    assert results['creds'].findings == []
    listed = {r['pid'] for r in results['pslist'].records}
    seen = {r['pid']: r['views'] for r in results['hidden_tasks'].records}
    assert {pid for pid, views in seen.items() if 'task_list' in views} == listed
    assert all('pid_table' in views for views in seen.values())
    creds = {r['pid']: r for r in results['creds'].records}
    assert set(creds) >= listed
    assert {r['cred'] for r in creds.values() if not r['kernel_thread']} == {'same'}
    unseen = {pid: comm for pid, comm in fresh_guest.processes().items() if pid not in seen}
    assert all(comm.startswith('kworker') for comm in unseen.values()), unseen


def test_task_unlinked_from_the_task_list_is_hidden(fresh_guest, kernel):
    with tampering(fresh_guest, kernel, 'vmi-hideme', 4) as (pids, tamper):
        tasks = tasks_by_pid(kernel)
        off = kernel.struct('task_struct').offset('tasks')
        siblings = {tasks[pid] + off for pid in pids}
        # A victim whose neighbours are its own siblings: they stay put until the end.
        for victim in pids:
            node = tasks[victim] + off
            nxt, prev = kernel.u64(node), kernel.u64(node + 8)
            if nxt in siblings and prev in siblings:
                break
        else:
            pytest.fail('no spawned process sits between two of its siblings')
        with tamper.paused():
            tamper.store(prev, nxt)              # prev->next = next
            tamper.store(nxt + 8, prev)          # next->prev = prev

        results = inspect(kernel, 'pslist', 'hidden_tasks', 'creds')
        listed = {r['pid'] for r in results['pslist'].records}
        assert victim not in listed and set(pids) - {victim} <= listed
        assert fresh_guest.processes()[victim] == 'vmi-hideme'    # /proc: the PID table
        (finding,) = results['hidden_tasks'].findings
        assert finding.kind == 'hidden_task' and finding.severity == 'high'
        assert finding.evidence['pid'] == victim
        assert finding.evidence['comm'] == 'vmi-hideme'
        assert finding.evidence['task'] == '0x%x' % tasks[victim]
        assert finding.evidence['views'] == ['pid_table', 'thread_group']
        assert results['creds'].findings == []
        # The hidden process still runs: the guest can signal it through its pid.
        fresh_guest.run('kill -0 %d' % victim)


def test_task_detached_from_its_pid_is_unreachable_by_pid(fresh_guest, kernel):
    with tampering(fresh_guest, kernel, 'vmi-nopid', 1) as (pids, tamper):
        (victim,) = pids
        task = tasks_by_pid(kernel)[victim]
        task_struct = kernel.struct('task_struct')
        pid = kernel.u64(task + task_struct.offset('thread_pid'))
        head = pid + kernel.struct('pid').offset('tasks')         # tasks[PIDTYPE_PID]
        assert kernel.u64(head) == task + task_struct.offset('pid_links')
        with tamper.paused():
            tamper.store(head, 0)

        results = inspect(kernel, 'pslist', 'hidden_tasks')
        assert victim in {r['pid'] for r in results['pslist'].records}
        assert victim not in fresh_guest.processes()             # /proc cannot find it
        (finding,) = results['hidden_tasks'].findings
        assert finding.severity == 'medium'
        assert finding.evidence['pid'] == victim
        assert finding.evidence['comm'] == 'vmi-nopid'
        assert finding.evidence['unreachable_by_pid'] is True
        assert finding.evidence['pid_table_entry'] == []


def test_task_on_init_cred_is_a_critical_escalation(fresh_guest, kernel):
    with tampering(fresh_guest, kernel, 'vmi-root', 2) as (pids, tamper):
        victim = pids[0]
        tamper.escalate(victim)

        results = inspect(kernel, 'creds', 'hidden_tasks')
        (finding,) = results['creds'].findings
        assert finding.kind == 'cred_escalation' and finding.severity == 'critical'
        assert finding.evidence['pid'] == victim
        assert finding.evidence['comm'] == 'vmi-root'
        assert finding.evidence['rules'] == ['init_cred']
        record = {r['pid']: r for r in results['creds'].records}[victim]
        assert record['cred'] == 'init_cred' and record['uid'] == 0
        assert results['hidden_tasks'].findings == []


def _own_cred(kernel, tasks, pid):
    """The spawned process's cred, checked to be its alone (we are about to edit it)."""
    off = kernel.struct('task_struct')
    cred = kernel.u64(tasks[pid] + off.offset('cred'))
    assert kernel.u64(tasks[pid] + off.offset('real_cred')) == cred
    users = [p for p, t in tasks.items()
             if cred in (kernel.u64(t + off.offset('cred')),
                         kernel.u64(t + off.offset('real_cred')))]
    assert users == [pid]
    return cred


def _set_ids(kernel, tamper, cred, *names):
    """Set the named id pairs (``uid`` = uid and gid, ...) to USER with 8-byte stores."""
    layout = kernel.struct('cred')
    for name, pair in (('uid', 'gid'), ('suid', 'sgid'), ('euid', 'egid'),
                       ('fsuid', 'fsgid')):
        if name in names:
            off = layout.offset(name)
            assert layout.offset(pair) == off + 4 and off % 8 == 0
            tamper.store(cred + off, USER | USER << 32)


def test_forged_ids_and_a_forged_parent(fresh_guest, kernel):
    with tampering(fresh_guest, kernel, 'vmi-cred', 3) as (pids, tamper):
        parent, child, setuid = pids
        tasks = tasks_by_pid(kernel)
        creds = {pid: _own_cred(kernel, tasks, pid) for pid in pids}
        with tamper.paused():
            # setuid-style ids on a plain executable: uid 1000, euid = suid = 0.
            _set_ids(kernel, tamper, creds[setuid], 'uid')
            # A user process, and a root process whose parent it now is.
            _set_ids(kernel, tamper, creds[parent], 'uid', 'suid', 'euid', 'fsuid')
            tamper.store(tasks[child] + kernel.struct('task_struct').offset('real_parent'),
                         tasks[parent])

        found = {f.evidence['pid']: f for f in inspect(kernel, 'creds')['creds'].findings}
        assert set(found) == {child, setuid}
        assert found[setuid].severity == 'medium'
        assert found[setuid].evidence['rules'] == ['setuid_without_setuid_exe']
        assert not int(found[setuid].evidence['exe_mode'], 8) & 0o4000
        assert found[child].severity == 'medium'
        assert found[child].evidence['rules'] == ['root_from_non_root_parent']
        assert found[child].evidence['parent_uid'] == USER
        assert found[child].evidence['parent'] == '0x%x' % tasks[parent]

        with tamper.paused():        # no execve leaves euid 0 with a non-zero suid
            _set_ids(kernel, tamper, creds[setuid], 'suid')
        found = {f.evidence['pid']: f for f in inspect(kernel, 'creds')['creds'].findings}
        assert found[setuid].severity == 'high'

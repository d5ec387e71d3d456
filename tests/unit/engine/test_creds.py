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

"""``creds`` on a synthetic kernel: each rule fires on its escalation, not on Linux.

The clean fake is a small system with what a real one has: root daemons, a user's shell,
a set-uid-root program it runs (``euid = suid = 0``, ``uid`` the user), a root shell
that program started, kernel threads on ``init_cred``, a task inside an ``access()``
override.  Each test then plants one escalation.
"""

import json

from hypothesis import HealthCheck, given, settings, strategies as hst
import pytest

from tests.unit.engine import fakepids
from tests.unit.engine.fakekernel import mutate_heap
from tests.unit.engine.fakepids import FakePids
from vmi_agent.engine import probes

USER = 1000
SETUID_ROOT = 0o4755


class System:
    """The clean fake and handles on its tasks."""

    def __init__(self, keyrings=False):
        f = self.f = FakePids()
        self.keyring = f.alloc(0x40) if keyrings else 0
        key = self.keyring
        self.init = f.process(1, 'init', mm=f.exe())
        self.kthreadd = f.process(2, 'kthreadd', cred=f.init_cred, kthread=True)
        self.kworker = f.process(3, 'kworker/0:0', parent=self.kthreadd, kthread=True)
        self.sshd = f.process(50, 'sshd', parent=self.init, mm=f.exe(), cred=f.cred(0))
        self.shell_cred = f.cred(USER, keyring=key)
        self.shell = f.process(100, 'sh', parent=self.sshd, cred=self.shell_cred,
                               mm=f.exe())
        # sudo: set-uid root, run by the user; then root all over, in its own child.
        self.sudo = f.process(101, 'sudo', parent=self.shell,
                              cred=f.cred(USER, euid=0, keyring=key),
                              mm=f.exe(SETUID_ROOT))
        self.rootsh = f.process(102, 'sh', parent=self.sudo, cred=f.cred(0, keyring=key),
                                mm=f.exe())
        # passwd after setuid(0): all root, parent the user's shell, set-uid exe.
        self.passwd = f.process(103, 'passwd', parent=self.shell,
                                cred=f.cred(0, keyring=key), mm=f.exe(SETUID_ROOT))
        # A user task inside access(): subjective fsuid differs, nothing raised.
        self.access = f.process(104, 'test', parent=self.shell,
                                cred=f.cred(USER, keyring=key),
                                real_cred=f.cred(USER, keyring=key), mm=f.exe())
        self.app = f.process(105, 'app', parent=self.shell, cred=self.shell_cred,
                             mm=f.exe())
        self.app_thread = f.thread(self.app, 106)


@pytest.fixture
def system():
    return System()


def run(f, tmp_path):
    kernel = f.attach(tmp_path)
    return probes.run_probes(kernel, ['creds'])[0]['creds']


def findings(result):
    return {x.evidence['pid']: x for x in result.findings}


def set_cred(f, task, cred=None, real_cred=None):
    if cred is not None:
        f.w64(task + fakepids.T_CRED, cred)
    if real_cred is not None:
        f.w64(task + fakepids.T_REAL_CRED, real_cred)


@pytest.mark.timeout(30)
def test_clean_system_has_no_findings(system, tmp_path):
    result = run(system.f, tmp_path)
    assert result.error is None and result.findings == []
    records = {r['pid']: r for r in result.records}
    assert sorted(records) == [1, 2, 3, 50, 100, 101, 102, 103, 104, 105, 106]
    assert records[101] == {'pid': 101, 'tgid': 101, 'comm': 'sudo', 'uid': USER,
                            'euid': 0, 'suid': 0, 'fsuid': 0, 'gid': USER,
                            'egid': USER, 'cred': 'same', 'kernel_thread': False}
    assert records[2]['cred'] == 'init_cred' and records[2]['kernel_thread']
    assert records[104]['cred'] == 'override'
    assert records[106]['tgid'] == 105 and records[106]['uid'] == USER


@pytest.mark.timeout(30)
def test_clean_system_with_keyrings_has_no_findings(tmp_path):
    result = run(System(keyrings=True).f, tmp_path)
    assert result.error is None and result.findings == []


@pytest.mark.parametrize('which', ['both', 'cred', 'real_cred'])
@pytest.mark.timeout(30)
def test_user_task_on_init_cred_is_critical(system, tmp_path, which):
    f = system.f
    set_cred(f, system.app, cred=f.init_cred if which != 'real_cred' else None,
             real_cred=f.init_cred if which != 'cred' else None)
    result = run(f, tmp_path)
    found = findings(result)
    assert set(found) == {105}
    finding = found[105]
    assert finding.kind == 'cred_escalation' and finding.severity == 'critical'
    assert 'init_cred' in finding.evidence['rules']
    assert finding.evidence['cred_is_init_cred'] == (which != 'real_cred')
    assert finding.evidence['comm'] == 'app'
    assert json.loads(json.dumps(finding.to_dict())) == finding.to_dict()


@pytest.mark.timeout(30)
def test_kernel_threads_on_init_cred_are_normal(system, tmp_path):
    set_cred(system.f, system.kworker, system.f.init_cred, system.f.init_cred)
    assert run(system.f, tmp_path).findings == []


@pytest.mark.timeout(30)
def test_only_the_subjective_cred_raised_to_root(system, tmp_path):
    """What writing task->cred alone does: root for access checks only."""
    f = system.f
    set_cred(f, system.app, cred=f.cred(0))
    found = findings(run(f, tmp_path))
    assert set(found) == {105}
    assert found[105].severity == 'high'
    assert found[105].evidence['rules'] == ['subjective_root']
    assert found[105].evidence['subjective']['euid'] == 0
    assert found[105].evidence['ids']['uid'] == USER


@pytest.mark.timeout(30)
def test_override_of_a_setuid_task_is_normal(system, tmp_path):
    """access() in a set-uid program: the override keeps euid 0, fsuid becomes uid."""
    f = system.f
    set_cred(f, system.sudo, cred=f.cred(USER, euid=0, fsuid=USER))
    assert run(f, tmp_path).findings == []


@pytest.mark.timeout(30)
def test_euid_zero_without_setuid_exe_is_medium(system, tmp_path):
    f = system.f
    set_cred(f, system.app, *[f.cred(USER, euid=0)] * 2)
    found = findings(run(f, tmp_path))
    assert set(found) == {105}
    assert found[105].severity == 'medium'
    assert found[105].evidence['rules'] == ['setuid_without_setuid_exe']
    assert found[105].evidence['exe_mode'] == '0100755'


@pytest.mark.timeout(30)
def test_euid_zero_with_nonzero_suid_is_high(system, tmp_path):
    """No execve leaves euid 0 with a non-zero suid."""
    f = system.f
    cred = f.cred(USER, euid=0, suid=USER)
    set_cred(f, system.app, cred, cred)
    found = findings(run(f, tmp_path))
    assert set(found) == {105} and found[105].severity == 'high'


@pytest.mark.timeout(30)
def test_setuid_exe_owned_by_a_user_does_not_excuse_euid_zero(system, tmp_path):
    f = system.f
    f.w64(system.app + fakepids.T_MM, f.exe(SETUID_ROOT, uid=USER))
    set_cred(f, system.app, *[f.cred(USER, euid=0)] * 2)
    found = findings(run(f, tmp_path))
    assert set(found) == {105} and found[105].evidence['exe_uid'] == USER


@pytest.mark.parametrize('mm, expect', [(0, 'no mm'), (1 << 40, 'unreadable')])
@pytest.mark.timeout(30)
def test_unreadable_exe_counts_as_not_setuid(system, tmp_path, mm, expect):
    f = system.f
    f.w64(system.sudo + fakepids.T_MM, f.k.dm(mm) if mm else 0)
    found = findings(run(f, tmp_path))
    assert set(found) == {101} and found[101].severity == 'medium'
    assert found[101].evidence['exe'].startswith(expect)


@pytest.mark.timeout(30)
def test_root_child_of_a_user_shell_is_commit_creds(system, tmp_path):
    """commit_creds(prepare_kernel_cred(0)) in a process the user started."""
    f = system.f
    set_cred(f, system.app, *[f.cred(0)] * 2)
    found = findings(run(f, tmp_path))
    assert set(found) == {105}
    finding = found[105]
    assert finding.severity == 'medium'
    assert finding.evidence['rules'] == ['root_from_non_root_parent']
    assert finding.evidence['parent'] == '0x%x' % system.shell
    assert finding.evidence['parent_uid'] == USER


@pytest.mark.timeout(30)
def test_kernel_made_cred_has_no_keyring_where_the_parent_has_one(tmp_path):
    system = System(keyrings=True)
    f = system.f
    set_cred(f, system.app, *[f.cred(0)] * 2)      # keyrings dropped
    found = findings(run(f, tmp_path))
    assert set(found) == {105} and found[105].severity == 'high'
    assert found[105].evidence['session_keyring'] == '0x0'
    assert found[105].evidence['parent_session_keyring'] == '0x%x' % system.keyring


@pytest.mark.timeout(30)
def test_root_orphan_adopted_by_a_user_subreaper_is_normal(system, tmp_path):
    """A daemon started with sudo that double-forked: systemd --user adopts it."""
    f = system.f
    f.make_subreaper(system.shell)
    set_cred(f, system.app, *[f.cred(0)] * 2)
    assert run(f, tmp_path).findings == []


@pytest.mark.timeout(30)
def test_escalated_thread_of_a_user_process(system, tmp_path):
    f = system.f
    set_cred(f, system.app_thread, *[f.cred(0)] * 2)
    found = findings(run(f, tmp_path))
    assert set(found) == {106}
    assert found[106].evidence['tgid'] == 105


@pytest.mark.parametrize('parent', ['init', 'kworker', 'sudo'])
@pytest.mark.timeout(30)
def test_root_children_of_root_and_kernel_parents_are_normal(system, tmp_path, parent):
    f = system.f
    task = f.process(200, 'child', parent=getattr(system, parent), mm=f.exe())
    assert task and run(f, tmp_path).findings == []


@pytest.mark.timeout(30)
def test_one_finding_with_every_rule_broken(system, tmp_path):
    f = system.f
    set_cred(f, system.app, cred=f.init_cred)        # real_cred stays the user's
    found = findings(run(f, tmp_path))
    assert found[105].severity == 'critical'
    assert found[105].evidence['rules'] == ['init_cred', 'subjective_root']


@pytest.mark.timeout(30)
def test_wild_cred_pointer_is_a_probe_error(system, tmp_path):
    system.f.w64(system.app + fakepids.T_REAL_CRED, 0x4141414141414141)
    assert 'non-canonical' in run(system.f, tmp_path).error


@pytest.mark.timeout(30)
def test_wild_parent_pointer_is_a_probe_error(system, tmp_path):
    f = system.f
    set_cred(f, system.app, *[f.cred(0)] * 2)
    f.w64(system.app + fakepids.T_PARENT, f.k.dm(1 << 40))
    assert 'TranslationError' in run(f, tmp_path).error


@pytest.mark.timeout(30)
def test_runs_without_a_pid_table_it_does_not_need(tmp_path):
    """creds walks the task list and thread groups only: a pre-4.20 IDR is fine."""
    f = FakePids(radix_idr=True)
    f.process(1, 'init')
    assert run(f, tmp_path).error is None


@pytest.mark.timeout(300)
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hst.lists(hst.tuples(hst.integers(0, 0x3000 // 8),
                            hst.sampled_from([1, 8, 0x40, 0x3e8, -8, -0x3e8, 1 << 32])),
                 min_size=1, max_size=12),
       hst.lists(hst.tuples(hst.integers(0, 0x3000 // 8), hst.integers(0, 2 ** 64 - 1)),
                 max_size=4))
def test_fuzzed_heap_never_escapes_the_probe(tmp_path_factory, nudges, writes):
    """Stores over tasks, creds and executables: a result or a VMIError, bounded."""
    system = System(keyrings=True)
    mutate_heap(system.f.g.ram, nudges, writes)
    result = run(system.f, tmp_path_factory.mktemp('fuzz'))
    assert result.error is None or not result.error.startswith('internal error')
    assert len(result.records) <= 64
    for finding in result.findings:
        assert finding.kind == 'cred_escalation'
        assert finding.severity in ('medium', 'high', 'critical')

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

"""``hidden_tasks`` on a synthetic kernel: cross-view findings and hostile PID tables.

The fake keeps every task in all three views (task list, PID table, thread group);
each test then does what a rootkit or a torn read would, and checks the finding, or
that the probe fails with a GuestDataError/TranslationError, boundedly.
"""


from hypothesis import HealthCheck, given, settings, strategies as hst
import pytest

from tests.unit.engine import fakepids
from tests.unit.engine.fakekernel import mutate_heap
from tests.unit.engine.fakepids import FakePids
from vmi_agent.engine import probes
from vmi_agent.engine.errors import GuestDataError
from vmi_agent.engine.probes import hidden_tasks

ALL = ['pid_table', 'task_list', 'thread_group']
THREAD = ['pid_table', 'thread_group']


def build(**shape):
    f = FakePids(**shape)
    f.init = f.process(1, 'init')
    f.kthreadd = f.process(2, 'kthreadd', kthread=True)
    f.sh = f.process(85, 'sh', parent=f.init)
    f.daemon = f.process(120, 'daemon', parent=f.init)
    f.worker = f.thread(f.daemon, 121, 'worker')
    f.worker2 = f.thread(f.daemon, 122)
    f.evil = f.process(300, 'evil', parent=f.sh)
    f.evil_thread = f.thread(f.evil, 301)
    return f


@pytest.fixture
def fake():
    return build()


def run(fake, tmp_path, name='hidden_tasks'):
    kernel = fake.attach(tmp_path)
    return probes.run_probes(kernel, [name])[0][name]


def views(result):
    return {r['pid']: r['views'] for r in result.records}


def by_pid(result):
    return {f.evidence['pid']: f for f in result.findings}


@pytest.mark.timeout(30)
def test_clean_guest_every_task_in_every_view_no_findings(fake, tmp_path):
    result = run(fake, tmp_path)
    assert result.error is None and result.findings == []
    assert views(result) == {1: ALL, 2: ALL, 85: ALL, 120: ALL, 121: THREAD, 122: THREAD,
                             300: ALL, 301: THREAD}
    record = result.records[4]
    assert record == {'pid': 121, 'tgid': 120, 'comm': 'worker',
                      'task': '0x%x' % fake.worker, 'views': THREAD}


@pytest.mark.timeout(30)
def test_process_unlinked_from_the_task_list_is_hidden(fake, tmp_path):
    fake.unlink(fake.evil)
    result = run(fake, tmp_path)
    assert result.error is None
    assert views(result)[300] == THREAD
    (finding,) = result.findings           # its thread is not reported on its own
    assert finding.kind == 'hidden_task' and finding.severity == 'high'
    assert finding.evidence == {'pid': 300, 'tgid': 300, 'comm': 'evil',
                                'task': '0x%x' % fake.evil, 'views': THREAD}
    assert '300 (evil)' in finding.summary


@pytest.mark.timeout(30)
def test_hidden_from_list_and_thread_group_still_found_by_pid(fake, tmp_path):
    fake.unlink(fake.sh)
    fake.unlink(fake.sh, fakepids.T_THREAD_NODE)
    f = by_pid(run(fake, tmp_path))
    assert set(f) == {85}
    assert f[85].severity == 'high' and f[85].evidence['views'] == ['pid_table']


@pytest.mark.timeout(30)
def test_hidden_from_list_and_pid_table_still_found_as_a_thread(fake, tmp_path):
    fake.unlink(fake.evil)
    fake.detach_pid(fake.evil)
    f = by_pid(run(fake, tmp_path))
    assert set(f) == {300}
    assert f[300].severity == 'high' and f[300].evidence['views'] == ['thread_group']


@pytest.mark.timeout(30)
def test_task_the_pid_table_does_not_lead_to_is_unreachable(fake, tmp_path):
    fake.detach_pid(fake.sh)
    f = by_pid(run(fake, tmp_path))
    assert set(f) == {85}
    assert f[85].severity == 'medium'
    assert f[85].evidence['unreachable_by_pid'] is True
    assert f[85].evidence['pid_table_entry'] == []
    assert f[85].evidence['views'] == ['task_list', 'thread_group']


@pytest.mark.timeout(30)
def test_thread_dropped_from_the_pid_table_is_unreachable(fake, tmp_path):
    fake.detach_pid(fake.worker)
    f = by_pid(run(fake, tmp_path))
    assert set(f) == {121} and f[121].severity == 'medium'


@pytest.mark.timeout(30)
def test_pid_slot_redirected_to_another_task(fake, tmp_path):
    fake.build_idr()
    fake.w64(fake.slot_of(85), fake.pids[1])
    f = by_pid(run(fake, tmp_path))
    assert set(f) == {85}
    assert f[85].evidence['pid_table_entry'] == ['0x%x' % fake.init]


@pytest.mark.timeout(30)
def test_threads_are_not_hidden_for_being_off_the_task_list(fake, tmp_path):
    result = run(fake, tmp_path)
    assert 'task_list' not in views(result)[121] and result.findings == []


@pytest.mark.timeout(30)
def test_thread_whose_leader_is_on_no_list_is_hidden(fake, tmp_path):
    """A forged group_leader pointing at a task no view shows."""
    stray = fake.alloc(fakepids.TASK_SIZE)
    fake.w64(fake.worker + fakepids.T_LEADER, stray)
    f = by_pid(run(fake, tmp_path))
    assert set(f) == {121}
    assert f[121].severity == 'high'
    assert f[121].evidence['group_leader'] == '0x%x' % stray


@pytest.mark.timeout(30)
def test_emptied_pid_table_makes_every_task_unreachable(fake, tmp_path):
    fake.build_idr({})
    result = run(fake, tmp_path)
    pids = {f.evidence['pid'] for f in result.findings}
    assert pids == {1, 2, 85, 120, 121, 122, 300, 301}
    assert {f.severity for f in result.findings} == {'medium'}


@pytest.mark.timeout(30)
def test_pid_table_with_a_lone_entry_at_index_zero(tmp_path):
    f = FakePids()
    task = f.process(1, 'init')
    f.build_idr({})
    f.w64(f.init_pid_ns + fakepids.XA_HEAD, f.pids[1])     # not a node: index 0's entry
    result = run(f, tmp_path)
    assert result.error is None and result.findings == []
    assert views(result)[1] == ALL and result.records[0]['task'] == '0x%x' % task


@pytest.mark.timeout(30)
def test_deep_pid_table(tmp_path):
    """pids across three levels of nodes (shift 12), as on a busy host."""
    f = FakePids()
    f.process(1, 'init')
    f.process(70000, 'far')
    f.process(4100, 'mid')
    result = run(f, tmp_path)
    assert result.error is None and result.findings == []
    assert max(shift for _, shift, _ in f.xa_nodes) == 12
    assert views(result) == {1: ALL, 4100: ALL, 70000: ALL}


@pytest.mark.timeout(30)
def test_internal_entries_are_skipped(fake, tmp_path):
    fake.build_idr()
    leaf = fake.slot_of(85)
    fake.w64(leaf + 8, (1 << 2) | 2)          # a sibling entry
    fake.w64(leaf + 16, (257 << 2) | 2)       # XA_ZERO_ENTRY (an allocated NULL)
    fake.w64(leaf + 24, 0x1235)               # a value entry
    result = run(fake, tmp_path)
    assert result.error is None and result.findings == []


@pytest.mark.timeout(30)
def test_second_reading_drops_a_fork_race(fake, tmp_path, monkeypatch):
    """A task seen in the PID table in the first pass only (forked or reaped between)."""
    real, calls = hidden_tasks.pid_table, []

    def racy(kernel):
        found = real(kernel)
        calls.append(1)
        if len(calls) == 1:
            found[999] = [fake.alloc(fakepids.TASK_SIZE)]    # born between the walks
            del found[85]                                    # exiting between the walks
        return found

    monkeypatch.setattr(hidden_tasks, 'pid_table', racy)
    result = run(fake, tmp_path)
    assert len(calls) == 2 and result.error is None and result.findings == []


@pytest.mark.timeout(30)
def test_cyclic_xarray(fake, tmp_path):
    fake.build_idr({i: fake.pids[1] for i in range(1, 4200, 40)})
    root = [n for n, shift, _ in fake.xa_nodes if shift == 12][0]
    child = [n for n, shift, _ in fake.xa_nodes if shift == 6][0]
    fake.w64(child + fakepids.XA_SLOTS + 8 * 63, root | 2)
    assert 'GuestDataError' in run(fake, tmp_path).error


@pytest.mark.timeout(30)
def test_node_linked_twice(fake, tmp_path):
    fake.build_idr()
    root = fake.xa_nodes[0][0]
    leaf = [n for n, shift, _ in fake.xa_nodes if shift == 0][0]
    fake.w64(root + fakepids.XA_SLOTS + 8 * 63, leaf | 2)
    error = run(fake, tmp_path).error
    assert 'GuestDataError' in error and 'reached twice' in error


@pytest.mark.timeout(30)
def test_self_loop_root_node(fake, tmp_path):
    fake.build_idr()
    root = fake.xa_nodes[0][0]
    fake.w64(root + fakepids.XA_SLOTS + 8 * 63, root | 2)
    assert 'GuestDataError' in run(fake, tmp_path).error


@pytest.mark.parametrize('shift', [3, 60, 255])
@pytest.mark.timeout(30)
def test_implausible_root_shift(fake, tmp_path, shift):
    fake.build_idr()
    fake.g.ram[fake.g.vaddr_to_paddr(fake.xa_nodes[0][0])] = shift
    error = run(fake, tmp_path).error
    assert 'GuestDataError' in error and 'shift' in error


@pytest.mark.timeout(30)
def test_child_shift_must_descend(fake, tmp_path):
    fake.build_idr()
    leaf = [n for n, shift, _ in fake.xa_nodes if shift == 0][0]
    fake.g.ram[fake.g.vaddr_to_paddr(leaf)] = 6
    assert 'expected 0' in run(fake, tmp_path).error


@pytest.mark.timeout(30)
def test_leaf_linking_a_node(fake, tmp_path):
    fake.build_idr()
    leaf = [n for n, shift, _ in fake.xa_nodes if shift == 0][0]
    fake.w64(leaf + fakepids.XA_SLOTS + 8 * 63, leaf | 2)
    assert 'leaf node' in run(fake, tmp_path).error


@pytest.mark.timeout(30)
def test_node_count_is_bounded(fake, tmp_path):
    fake.build_idr({i: fake.pids[1] for i in range(1, 4200, 40)})
    kernel = fake.attach(tmp_path)
    layout = kernel.memo(hidden_tasks.XArrayLayout)
    xarray = kernel.symbol('init_pid_ns')
    entries = list(hidden_tasks.xarray_entries(kernel, xarray, layout))
    assert [index for index, _, _ in entries] == list(range(1, 4200, 40))
    with pytest.raises(GuestDataError, match='more than 1 nodes'):
        list(hidden_tasks.xarray_entries(kernel, xarray, layout, max_nodes=1))


def _forged_wide_xarray(f, leaves_per_mid):
    """A root whose 64 slots all hold level-6 nodes, each holding distinct leaves."""
    root = f.alloc(fakepids.XA_NODE_SIZE)
    f.g.ram[f.g.vaddr_to_paddr(root)] = 12
    for slot in range(64):
        mid = f.alloc(fakepids.XA_NODE_SIZE)
        f.g.ram[f.g.vaddr_to_paddr(mid)] = 6
        f.w64(root + fakepids.XA_SLOTS + 8 * slot, mid | 2)
        for s in range(leaves_per_mid):
            leaf = f.alloc(fakepids.XA_NODE_SIZE)
            f.w64(leaf + fakepids.XA_SLOTS, f.pids[1])
            f.w64(mid + fakepids.XA_SLOTS + 8 * s, leaf | 2)
    f.w64(f.init_pid_ns + fakepids.XA_HEAD, root | 2)


@pytest.mark.timeout(60)
def test_wide_forged_xarray_stops_at_the_node_bound(tmp_path, monkeypatch):
    f = FakePids()
    f.process(1, 'init')
    f.build_idr()
    _forged_wide_xarray(f, 2)                          # 1 + 64 + 128 nodes
    monkeypatch.setattr(hidden_tasks, 'MAX_XA_NODES', 100)
    error = run(f, tmp_path).error
    assert 'GuestDataError' in error and 'more than 100 nodes' in error


@pytest.mark.timeout(60)
def test_many_pids_for_one_task_are_one_task(tmp_path):
    """4,096 forged pid entries that all lead to init: one record, no finding."""
    f = FakePids()
    f.process(1, 'init')
    f.build_idr()
    _forged_wide_xarray(f, 64)
    result = run(f, tmp_path)
    assert result.error is None and result.findings == []
    assert [r['pid'] for r in result.records] == [1]


@pytest.mark.timeout(30)
def test_shared_leaf_is_reached_twice(tmp_path):
    f = FakePids()
    f.process(1, 'init')
    f.build_idr()
    _forged_wide_xarray(f, 1)
    kernel = f.attach(tmp_path)
    root = kernel.u64(f.init_pid_ns + fakepids.XA_HEAD) - 2
    first_mid = kernel.u64(root + fakepids.XA_SLOTS) - 2
    second_mid = kernel.u64(root + fakepids.XA_SLOTS + 8) - 2
    f.w64(second_mid + fakepids.XA_SLOTS, kernel.u64(first_mid + fakepids.XA_SLOTS))
    assert 'reached twice' in run(f, tmp_path).error


@pytest.mark.timeout(30)
def test_wild_pid_pointer(fake, tmp_path):
    fake.build_idr()
    fake.w64(fake.slot_of(85), 0x4141414141414140)
    assert 'non-canonical' in run(fake, tmp_path).error


@pytest.mark.timeout(30)
def test_wild_node_pointer(fake, tmp_path):
    fake.build_idr()
    root = fake.xa_nodes[0][0]
    fake.w64(root + fakepids.XA_SLOTS, fake.k.dm(1 << 40) | 2)
    assert 'TranslationError' in run(fake, tmp_path).error


@pytest.mark.timeout(30)
def test_pid_task_list_loop(fake, tmp_path):
    node = fake.sh + fakepids.T_PID_LINKS
    fake.w64(node, node)
    assert 'loops' in run(fake, tmp_path).error


@pytest.mark.timeout(30)
def test_pid_task_list_too_long(fake, tmp_path):
    nodes = [fake.alloc(16) for _ in range(40)]
    for a, b in zip(nodes, nodes[1:]):
        fake.w64(a, b)
    fake.w64(fake.pids[85] + fakepids.PID_TASKS, nodes[0])
    assert 'more than 16 tasks' in run(fake, tmp_path).error


@pytest.mark.timeout(30)
def test_cyclic_thread_group(fake, tmp_path):
    fake.w64(fake.worker2 + fakepids.T_THREAD_NODE, fake.worker + fakepids.T_THREAD_NODE)
    assert 'GuestDataError' in run(fake, tmp_path).error


@pytest.mark.timeout(30)
def test_thread_ring_of_kernels_without_thread_head(tmp_path):
    f = build(old_threads=True)
    result = run(f, tmp_path)
    assert result.error is None and result.findings == []
    assert views(result)[122] == THREAD
    f.unlink(f.evil)
    assert set(by_pid(run(f, tmp_path))) == {300}


@pytest.mark.timeout(30)
def test_pid_link_of_kernels_before_4_19(tmp_path):
    f = build(old_pid_links=True)
    f.detach_pid(f.sh)
    assert set(by_pid(run(f, tmp_path))) == {85}


@pytest.mark.timeout(30)
def test_radix_tree_idr_is_a_profile_error(tmp_path):
    result = run(build(radix_idr=True), tmp_path)
    assert 'ProfileError' in result.error and 'xarray' in result.error


@pytest.mark.timeout(30)
def test_records_and_findings_are_plain_json(fake, tmp_path):
    import json
    fake.unlink(fake.evil)
    fake.detach_pid(fake.sh)
    result = run(fake, tmp_path)
    assert json.loads(json.dumps(result.to_dict())) == result.to_dict()
    assert [f.severity for f in result.findings] == ['medium', 'high']


@pytest.mark.timeout(300)
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hst.lists(hst.tuples(hst.integers(0, 0x6000 // 8),
                            hst.sampled_from([1, 2, 3, 8, 0x40, 0x100, -8, -0x40])),
                 min_size=1, max_size=12),
       hst.lists(hst.tuples(hst.integers(0, 0x6000 // 8), hst.integers(0, 2 ** 64 - 1)),
                 max_size=4))
def test_fuzzed_heap_never_escapes_the_probe(tmp_path_factory, nudges, writes):
    """Stores over tasks, pids, signals and xarray nodes: a result or a VMIError.

    Most stores nudge what is there (a pointer moved a little, a node tag or a value
    bit set) so that the walks get past the first check; a few are fully random.
    """
    f = build()
    f.build_idr()
    mutate_heap(f.g.ram, nudges, writes)
    result = run(f, tmp_path_factory.mktemp('fuzz'))
    assert result.error is None or not result.error.startswith('internal error')
    assert len(result.records) <= 64
    for finding in result.findings:
        assert finding.kind == 'hidden_task'

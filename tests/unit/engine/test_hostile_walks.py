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

"""Probes on crafted hostile memory: every bad shape ends as a per-probe error, quickly.

Each test builds a well-formed synthetic kernel, corrupts it the way a rootkit or a
torn read could, and checks that the probe reports an error (never hangs, raises or
returns garbage silently) while the other probes still run.
"""

import struct

from hypothesis import HealthCheck, given, settings, strategies as hst
import pytest

from tests.unit.engine.fakekernel import HEAP, FakeKernel
from vmi_agent.engine import probes
from vmi_agent.engine.errors import GuestDataError


@pytest.fixture
def fake():
    k = FakeKernel()
    k.init = k.task(1, 'init')
    k.sh = k.task(85, 'sh', parent=k.init, uid=1000)
    k.kt = k.task(2, 'kthreadd', kthread=True)
    k.mod = k.module('dummy', 20480)
    return k


def run(fake, tmp_path, *names):
    kernel = fake.attach(tmp_path)
    results, _ = probes.run_probes(kernel, names)
    return results


def test_well_formed_guest_reads_back_exactly(fake, tmp_path):
    results = run(fake, tmp_path, 'pslist', 'modules')
    assert results['pslist'].error is None
    assert results['pslist'].records == [
        {'pid': 1, 'tgid': 1, 'ppid': 0, 'uid': 0, 'comm': 'init', 'kernel_thread': False},
        {'pid': 85, 'tgid': 85, 'ppid': 1, 'uid': 1000, 'comm': 'sh',
         'kernel_thread': False},
        {'pid': 2, 'tgid': 2, 'ppid': 0, 'uid': 0, 'comm': 'kthreadd',
         'kernel_thread': True}]
    assert results['modules'].records == [{'name': 'dummy', 'size': 20480,
                                           'state': 'live'}]


def test_cyclic_task_list(fake, tmp_path):
    """The last task points back to the second instead of the head."""
    fake.g.vu64(fake.kt + 0x10, fake.sh + 0x10)
    results = run(fake, tmp_path, 'pslist', 'modules')
    assert 'GuestDataError' in results['pslist'].error
    assert results['modules'].error is None          # the other probe still ran


def test_self_loop_with_consistent_back_links_is_caught_as_a_cycle(fake, tmp_path):
    node = fake.sh + 0x10
    fake.g.vu64(node, node)
    fake.g.vu64(node + 8, node)
    fake.g.vu64(fake.init + 0x10, node)
    kernel = fake.attach(tmp_path)
    with pytest.raises(GuestDataError):
        list(kernel.walk_list(kernel.symbol('init_task') + 0x10, 0x10))


def test_pointer_outside_ram(fake, tmp_path):
    """A page the guest maps to a physical address it does not have."""
    fake.g.map(0xffffc90000000000, 0x7000000000, size=2 * 4096)
    fake.g.vu64(fake.sh + 0x10, 0xffffc90000001000)
    error = run(fake, tmp_path, 'pslist')['pslist'].error
    assert 'TranslationError' in error and 'outside guest RAM' in error


def test_non_canonical_pointer(fake, tmp_path):
    fake.g.vu64(fake.sh + 0x10, 0x4141414141414141)
    assert 'non-canonical' in run(fake, tmp_path, 'pslist')['pslist'].error


def test_unmapped_pointer(fake, tmp_path):
    fake.g.vu64(fake.sh + 0x10, fake.dm(1 << 40))       # past the direct map's RAM
    assert 'not present' in run(fake, tmp_path, 'pslist')['pslist'].error


def test_wild_cred_pointer(fake, tmp_path):
    p = fake.g.vaddr_to_paddr(fake.sh)
    struct.pack_into('<Q', fake.g.ram, p + 0x30, 0xdead000000000000)
    assert run(fake, tmp_path, 'pslist')['pslist'].error


def test_list_longer_than_the_limit(fake, tmp_path):
    kernel = fake.attach(tmp_path)
    with pytest.raises(GuestDataError, match='longer than 2'):
        list(kernel.walk_list(kernel.symbol('init_task') + 0x10, 0x10, limit=2))


def test_endless_string_is_cut_at_the_limit(fake, tmp_path):
    fake.g.write(0x1800000, b'A' * (3 << 20))           # no NUL for 3 MiB
    kernel = fake.attach(tmp_path)
    text = kernel.cstring(fake.dm(0x1800000), limit=10000)
    assert text == 'A' * 10000


def test_comm_without_nul_is_bounded(fake, tmp_path):
    p = fake.g.vaddr_to_paddr(fake.sh)
    fake.g.ram[p + 0x40:p + 0x50] = b'X' * 16
    records = run(fake, tmp_path, 'pslist')['pslist'].records
    assert records[1]['comm'] == 'X' * 16


def test_garbage_comm_bytes_are_replaced_not_fatal(fake, tmp_path):
    p = fake.g.vaddr_to_paddr(fake.sh)
    fake.g.ram[p + 0x40:p + 0x44] = b'\xff\xfe\x00\x00'
    assert run(fake, tmp_path, 'pslist')['pslist'].records[1]['comm'] == '\ufffd\ufffd'


def test_cyclic_module_list(fake, tmp_path):
    second = fake.module('crc7', 4096)
    fake.g.vu64(second + 8, second + 8)
    fake.g.vu64(second + 16, second + 8)
    results = run(fake, tmp_path, 'modules', 'pslist')
    assert 'GuestDataError' in results['modules'].error
    assert results['pslist'].error is None


def test_unknown_module_state_is_reported_not_fatal(fake, tmp_path):
    struct.pack_into('<I', fake.g.ram, fake.g.vaddr_to_paddr(fake.mod), 77)
    assert run(fake, tmp_path, 'modules')['modules'].records[0]['state'] == 'unknown(77)'


def test_a_probe_bug_is_contained(fake, tmp_path, monkeypatch):
    monkeypatch.setattr(probes.get('pslist'), 'run', lambda self, k: 1 / 0)
    results = run(fake, tmp_path, 'pslist', 'modules')
    assert results['pslist'].error.startswith('internal error in probe pslist')
    assert results['modules'].error is None


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hst.lists(hst.tuples(hst.integers(0, 0x2000 - 8), hst.integers(0, 2 ** 64 - 1)),
                 min_size=1, max_size=12))
def test_fuzzed_heap_never_escapes_a_probe(tmp_path_factory, writes):
    """Random 8-byte stores over tasks, creds and modules: a result or an error."""
    k = FakeKernel()
    init = k.task(1, 'init')
    for pid in range(2, 12):
        k.task(pid, 'p%d' % pid, parent=init, uid=pid)
    k.module('a', 1)
    k.module('b', 2)
    for off, value in writes:
        struct.pack_into('<Q', k.g.ram, HEAP + off, value)
    results = run(k, tmp_path_factory.mktemp('fuzz'), 'pslist', 'modules')
    for result in results.values():
        assert result.error is None or not result.error.startswith('internal error')
        assert len(result.records) <= 64

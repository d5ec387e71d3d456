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

"""A guest with more RAM than q35's low window: its RAM file is split around 4 GiB.

With 3 GiB, QEMU puts the first 2 GiB at guest-physical 0 and the last 1 GiB at
4 GiB; the file holds them back to back.  Processes spawned late live in whichever
half the guest's allocator chose, so reading them right proves the layout.
"""

import pytest

from tests.functional.conftest import flavour
from tools.testbed.guest import Guest
from vmi_agent.engine import probes
from vmi_agent.engine.attach import attach
from vmi_agent.engine.memory import open_memory


@pytest.fixture(scope='module')
def big_guest():
    with Guest(flavour=flavour(), memory_mb=3072) as booted:
        yield booted


def test_split_ram_file_reads_the_whole_guest(big_guest, tmp_path):
    pids = big_guest.spawn('vmi-high', 40)
    try:
        with open_memory(big_guest.ram_path) as memory:
            assert [start for start, _ in memory.ranges()] == [0, 4 << 30]
            kernel = attach(memory, vmlinux=big_guest.vmlinuz, profile_dir=str(tmp_path))
            results, _ = probes.run_probes(kernel, ['pslist', 'modules'])
        assert results['pslist'].error is None
        seen = {r['pid']: r['comm'] for r in results['pslist'].records
                if not r['kernel_thread']}
        assert seen == big_guest.user_processes()
        assert set(pids) <= set(seen)
        assert {r['name'] for r in results['modules'].records} == set(big_guest.modules())
    finally:
        big_guest.stop_spawned()

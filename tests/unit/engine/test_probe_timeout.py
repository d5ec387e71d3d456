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

"""A probe's time limit: an endless probe is stopped at its next read of guest memory."""

import pytest

from tests.unit.engine.fakekernel import FakeKernel
from vmi_agent.engine import probes
from vmi_agent.engine.probes.base import Probe, ProbeResult


class _Endless(Probe):
    """Reads init_task's first word forever, as a probe caught in a bug would."""

    name = 'endless'

    def run(self, kernel):
        while True:
            kernel.u64(kernel.symbol('init_task'))


class _Quick(Probe):
    name = 'quick'

    def run(self, kernel):
        return ProbeResult(records=[{'word': kernel.u64(kernel.symbol('init_task'))}])


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    fake = FakeKernel()
    fake.task(1, 'init')
    registry = dict(probes._registry(), endless=_Endless, quick=_Quick)
    monkeypatch.setattr(probes, '_registry', lambda: registry)
    return fake.attach(tmp_path)


def test_endless_probe_is_interrupted_and_the_next_probe_runs(kernel):
    results, _ = probes.run_probes(kernel, ['endless', 'quick', 'pslist'], timeout=0.2)
    assert results['endless'].error.startswith('Interrupted: probe endless ran past its '
                                               '0.2s time limit'), results['endless'].error
    assert results['quick'].error is None, 'the limit must not leak into the next probe'
    assert results['pslist'].records, 'pslist after an interrupted probe reads normally'


def test_probes_within_their_limit_are_untouched(kernel):
    results, _ = probes.run_probes(kernel, ['quick', 'pslist'], timeout=30)
    assert all(r.error is None for r in results.values()), results

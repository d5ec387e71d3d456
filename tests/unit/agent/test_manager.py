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

"""The agent's manager, in one process: RPC methods, policies, triggers, runs, notices.

Real parts: the ``dump`` driver on a memory image file, the engine's probes, the run
queue, and oslo.messaging's notifier and listener on the in-process ``kombu+memory``
transport.  Stand-in: the kernel profile, because the synthetic image
(``tests/unit/engine/fakekernel.py``) carries no BTF or kallsyms for the engine to
profile; attach uses the fake kernel's profile instead.
"""

import datetime
import os

from oslo_config import cfg
from oslo_utils import uuidutils
import pytest

from nova_vmi.objects import policy as policy_obj
from nova_vmi.objects import run as run_obj
from tests.unit.engine import fakekernel
from tools.testbed.collector import NotificationCollector
from vmi_agent import conf as agent_conf
from vmi_agent import guests
from vmi_agent.drivers.dump import DumpDriver
from vmi_agent.engine import probes
from vmi_agent.engine.linux.kernel import LinuxKernel
from vmi_agent.engine.linux.locate import locate
from vmi_agent.engine.probes.base import Finding, Probe, ProbeResult
from vmi_agent.manager import AgentManager
from vmi_agent.notifier import AgentNotifier

URL = 'kombu+memory:////'


def _fake_attach(memory, profile_dir=None):
    profile = fakekernel.profile()
    return LinuxKernel(memory, profile, locate(memory, profile))


class _Suspicious(Probe):
    """A probe that always finds something: the finding path without a rootkit."""

    name = 'suspicious'

    def run(self, kernel):
        return ProbeResult(records=[{'ok': False}], findings=[
            Finding('test_kind', 'high', 'something is off', {'where': 1}),
            Finding('test_kind', 'low', 'a detail', {})])


@pytest.fixture
def conf(tmp_path):
    conf = cfg.ConfigOpts()
    agent_conf.register_all(conf)
    conf([])
    conf.set_override('host', 'compute-1')
    conf.set_override('driver', 'dump', group='agent')
    conf.set_override('state_dir', str(tmp_path / 'state'), group='agent')
    conf.set_override('image_dir', str(tmp_path / 'images'), group='dump')
    os.makedirs(tmp_path / 'images')
    return conf


@pytest.fixture
def image(conf, tmp_path):
    """A guest image with init and two processes; returns its instance uuid."""
    kernel = fakekernel.FakeKernel()
    init = kernel.task(1, 'init')
    kernel.task(80, 'sshd', parent=init)
    kernel.task(81, 'bash', parent=init, uid=1000)
    uuid = uuidutils.generate_uuid()
    kernel.g.save(tmp_path / 'images' / ('%s.raw' % uuid))
    return uuid


@pytest.fixture(scope='module')
def notes():
    """One listener for the module: stopping one costs a second.

    Tests tell their notifications apart by run id and instance uuid, fresh in each test.
    """
    with NotificationCollector(URL, 'vmi_notifications') as collector:
        yield collector


@pytest.fixture
def manager(conf, image, notes, monkeypatch):
    monkeypatch.setattr(guests, 'attach', _fake_attach)
    registry = dict(probes._registry(), suspicious=_Suspicious)
    monkeypatch.setattr(probes, '_registry', lambda: registry)
    transport = notes._transport
    mgr = AgentManager(conf, DumpDriver(conf),
                       AgentNotifier(transport, 'compute-1', 'vmi_notifications'))
    mgr.start()
    yield mgr
    mgr.stop()
    mgr.notifier.stop()


def _request(uuid, probes, **kw):
    return run_obj.VMIRunRequest(
        run_id=uuidutils.generate_uuid(), instance_uuid=uuid, probes=probes,
        requested_at=datetime.datetime.now(datetime.timezone.utc), **kw)


def _outcome(notes, run_id):
    notes.wait_for(None, timeout=10, run_id=run_id, count=1)
    for _ in range(2):
        found = (notes.matching('vmi.run.end', run_id=run_id)
                 + notes.matching('vmi.run.error', run_id=run_id))
        if found:
            return found[0]
        notes.wait_for(None, timeout=10, run_id=run_id, count=2)
    raise AssertionError('run %s neither ended nor failed: %s' % (run_id, notes.received))


def test_requested_run_publishes_start_then_end_with_records(manager, notes, image):
    request = _request(image, ['pslist'])
    manager.introspect({}, request)
    end = _outcome(notes, request.run_id)
    assert end.event_type == 'vmi.run.end', end.data
    assert [n.event_type for n in notes.matching(None, run_id=request.run_id)][:2] == [
        'vmi.run.start', 'vmi.run.end']
    assert end.publisher_id == 'vmi-agent:compute-1'
    result = end.data['results'][0]['nova_object.data']
    assert sorted(r['comm'] for r in result['records']) == ['bash', 'init', 'sshd']
    assert end.data['kernel_release'] == '6.1.0-fake'


def test_findings_travel_in_the_run_and_one_notice_each(manager, notes, image):
    request = _request(image, ['suspicious'])
    manager.introspect({}, request)
    notes.wait_for('vmi.finding', timeout=10, count=2, run_id=request.run_id)
    findings = notes.matching('vmi.finding', run_id=request.run_id)
    assert sorted((f.priority, f.data['severity']) for f in findings) == [
        ('ERROR', 'high'), ('WARN', 'low')]
    # The listener's threads may hand notifications over out of order: wait for it.
    end = notes.wait_for('vmi.run.end', timeout=10, run_id=request.run_id)[0]
    assert len(end.data['findings']) == 2


def test_run_for_an_instance_not_on_this_host_is_an_error(manager, notes):
    request = _request(uuidutils.generate_uuid(), ['pslist'])
    manager.introspect({}, request)
    error = _outcome(notes, request.run_id)
    assert error.event_type == 'vmi.run.error'
    assert 'does not run on host compute-1' in error.data['error']


def test_a_guest_new_since_the_last_refresh_is_served_at_once(manager, notes, tmp_path):
    kernel = fakekernel.FakeKernel()
    kernel.task(1, 'init')
    uuid = uuidutils.generate_uuid()
    kernel.g.save(tmp_path / 'images' / ('%s.raw' % uuid))
    request = _request(uuid, ['pslist'])
    manager.introspect({}, request)
    assert _outcome(notes, request.run_id).event_type == 'vmi.run.end'


def test_unknown_probe_is_an_error_naming_it(manager, notes, image):
    request = _request(image, ['pslist', 'no_such_probe'])
    manager.introspect({}, request)
    error = _outcome(notes, request.run_id)
    assert error.event_type == 'vmi.run.error'
    assert 'unknown probe no_such_probe' in error.data['error']


def test_policy_without_on_demand_refuses_requests(manager, notes, image):
    policy = policy_obj.VMIPolicy.default(['pslist'])
    policy.on_demand = False
    manager.set_policy({}, image, policy)
    request = _request(image, ['pslist'])
    manager.introspect({}, request)
    error = _outcome(notes, request.run_id)
    assert error.event_type == 'vmi.run.error'
    assert 'on-demand runs are off' in error.data['error']


def test_guest_trigger_needs_the_policy_and_respects_its_rate(manager, notes, image):
    manager._fire(image, 'guest', 'debugcon byte 0x54')
    assert not notes.matching('vmi.run.start', instance_uuid=image), (
        'a guest trigger without a guest policy must not run')
    policy = policy_obj.VMIPolicy.default(['pslist'])
    policy.guest = True
    policy.guest_trigger_rate = 1.0
    manager.set_policy({}, image, policy)
    for _ in range(50):
        manager._fire(image, 'guest', 'debugcon byte 0x54')
    notes.wait_for('vmi.run.end', timeout=10, instance_uuid=image, trigger='guest')
    started = notes.matching('vmi.run.start', instance_uuid=image, trigger='guest')
    assert 1 <= len(started) <= 2, 'a burst of 50 at 1/s gave %d runs' % len(started)


def test_vanished_guest_is_an_error_and_is_forgotten(manager, notes, image, conf):
    first = _request(image, ['pslist'])
    manager.introspect({}, first)
    assert _outcome(notes, first.run_id).event_type == 'vmi.run.end'
    os.unlink(os.path.join(conf.dump.image_dir, '%s.raw' % image))
    second = _request(image, ['pslist'])
    manager.introspect({}, second)
    error = _outcome(notes, second.run_id)
    assert error.event_type == 'vmi.run.error'
    assert error.data['error_type'] == 'GuestVanished'
    manager.refresh_guests()
    assert manager.list_guests({}) == []


def test_policy_survives_a_restart_of_the_agent(manager, conf, image):
    policy = policy_obj.VMIPolicy.default(['modules'])
    policy.periodic_seconds = 3600
    manager.set_policy({}, image, policy)
    again = AgentManager(conf, manager.driver, manager.notifier)
    assert again.policies.get(image).periodic_seconds == 3600
    assert again.policies.get(image).probes == ['modules']


def test_invalid_policy_is_refused_and_the_old_one_kept(manager, image):
    policy = policy_obj.VMIPolicy.default(['pslist'])
    policy.periodic_seconds = 0
    manager.set_policy({}, image, policy)
    assert manager.policies.get(image).periodic_seconds is None


def test_ping_and_list_guests(manager, image):
    assert manager.ping({}) == {'host': 'compute-1', 'driver': 'dump', 'version': '1.0'}
    assert [g.uuid for g in manager.list_guests({})] == [image]


def test_heartbeat_reports_driver_and_guests(manager, notes, image):
    manager.heartbeat()
    beat = notes.wait_for('vmi.agent.heartbeat', timeout=10)[-1].data
    assert beat['host'] == 'compute-1' and beat['driver'] == 'dump'
    assert [g['nova_object.data']['uuid'] for g in beat['guests']] == [image]

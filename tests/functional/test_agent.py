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

"""The agent end to end: a ``vmi-agent`` process, the real RabbitMQ, live QEMU guests.

RPC goes to the agent through ``nova_vmi.rpc.AgentAPI``; what it finds comes back as
notifications, collected here by a real oslo.messaging listener.  Each test module run
uses its own agent host name and notification topic on the shared broker.
"""

import datetime
import shutil
import subprocess
import time

from oslo_config import cfg
from oslo_utils import timeutils
from oslo_utils import uuidutils
import pytest

from nova_vmi.objects import policy as policy_obj
from nova_vmi.objects import run as run_obj
from nova_vmi import rpc
from tests.functional.conftest import flavour
from tools.testbed.agent import AgentProcess, RABBIT_URL
from tools.testbed.collector import NotificationCollector
from tools.testbed.guest import Guest


@pytest.fixture(scope='module')
def agent(guest):
    with AgentProcess() as proc:
        proc.add_guest(guest)
        yield proc


@pytest.fixture(scope='module')
def notes(agent):
    with NotificationCollector(RABBIT_URL, agent.topic) as collector:
        yield collector


@pytest.fixture(scope='module')
def api():
    transport = rpc.get_transport(cfg.CONF, url=RABBIT_URL)
    yield rpc.AgentAPI(transport, timeout=30)
    transport.cleanup()


def _wait_for_guest(api, agent, uuid, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert agent.alive(), 'the agent exited:\n' + agent.log_tail()
        try:
            if uuid in [g.uuid for g in api.list_guests({}, agent.host)]:
                return
        except Exception:  # the agent may not serve yet: MessagingTimeout
            pass
        time.sleep(0.3)
    raise AssertionError('agent never listed guest %s:\n%s' % (uuid, agent.log_tail()))


def _policy(**values):
    policy = policy_obj.VMIPolicy.default(values.pop('probes', ['pslist']))
    for name, value in values.items():
        setattr(policy, name, value)
    return policy


def _request(uuid, probes, consistency=None):
    return run_obj.VMIRunRequest(
        run_id=uuidutils.generate_uuid(), instance_uuid=uuid, probes=probes,
        trigger='on_demand', consistency=consistency,
        requested_at=datetime.datetime.now(datetime.timezone.utc))


def _introspect(api, agent, notes, uuid, probes, consistency=None, timeout=60):
    """Request a run over RPC and return its ``vmi.run.end`` or ``vmi.run.error``."""
    request = _request(uuid, probes, consistency)
    api.introspect({}, agent.host, request)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = (notes.matching('vmi.run.end', run_id=request.run_id)
                + notes.matching('vmi.run.error', run_id=request.run_id))
        if done:
            return done[0]
        time.sleep(0.05)
    raise AssertionError('run %s never ended:\n%s' % (request.run_id, agent.log_tail()))


@pytest.fixture(scope='module')
def ready(api, agent, notes, guest):
    _wait_for_guest(api, agent, guest.uuid)
    return guest


def test_ping_names_the_host_and_driver(api, agent, ready):
    assert api.ping({}, agent.host) == {'host': agent.host, 'driver': 'qemu',
                                        'version': '1.0'}


def test_requested_run_reports_the_guests_real_processes(api, agent, notes, ready):
    guest = ready
    pids = guest.spawn('vmi-func-rpc', count=2)
    try:
        truth = guest.processes()
        end = _introspect(api, agent, notes, guest.uuid, ['pslist', 'modules'])
    finally:
        guest.stop(*pids)
    assert end.event_type == 'vmi.run.end', end.data
    assert end.publisher_id == 'vmi-agent:%s' % agent.host
    data = end.data
    assert data['trigger'] == 'on_demand' and data['consistency'] == 'live'
    results = {r['nova_object.data']['probe']: r['nova_object.data']
               for r in data['results']}
    found = {r['pid']: r['comm'] for r in results['pslist']['records']}
    for pid in pids:
        assert found.get(pid) == 'vmi-func-rpc', 'spawned pid %d missing: %s' % (pid, found)
    # Everything /proc showed just before, bar processes that ended meanwhile.
    missing = {pid: comm for pid, comm in truth.items() if pid not in found}
    assert len(missing) <= 2, 'processes /proc lists but the run missed: %s' % missing
    assert results['modules']['error'] is None
    assert data['kernel_release'] == guest.release
    assert data['started_at'] <= data['ended_at']


def test_pause_mode_reports_the_pause(api, agent, notes, ready):
    end = _introspect(api, agent, notes, ready.uuid, ['pslist'], consistency='pause')
    assert end.event_type == 'vmi.run.end', end.data
    assert end.data['consistency'] == 'pause'
    assert end.data['pause_seconds'] > 0, 'a paused run reports its pause time'
    assert ready.running(), 'the guest runs again after a paused run'


def test_guest_trigger_starts_a_run_without_rpc(api, agent, notes, ready):
    guest = ready
    api.set_policy({}, agent.host, guest.uuid, _policy(guest=True, guest_trigger_rate=50.0))
    try:
        deadline = time.monotonic() + 30
        while not notes.matching('vmi.run.end', instance_uuid=guest.uuid, trigger='guest'):
            assert time.monotonic() < deadline, ('no guest-triggered run:\n'
                                                 + agent.log_tail())
            guest.trigger()      # the agent connects to the debug port asynchronously
            time.sleep(0.2)
        end = notes.matching('vmi.run.end', instance_uuid=guest.uuid, trigger='guest')[0]
        assert end.data['trigger_detail'].startswith('debugcon'), end.data
        assert end.data['results'][0]['nova_object.data']['records'], 'pslist found nothing'
    finally:
        api.set_policy({}, agent.host, guest.uuid, None)


def test_periodic_policy_runs_at_its_interval(api, agent, notes, ready):
    guest = ready
    api.set_policy({}, agent.host, guest.uuid, _policy(periodic_seconds=1))
    try:
        runs = notes.wait_for('vmi.run.end', timeout=30, count=4,
                              instance_uuid=guest.uuid, trigger='periodic')
    finally:
        api.set_policy({}, agent.host, guest.uuid, None)
    times = [timeutils.parse_isotime(r.data['triggered_at']).timestamp() for r in runs]
    gaps = [b - a for a, b in zip(times, times[1:])]
    # One second apart by the agent's clock (a busy machine may delay a tick, and a
    # late tick is skipped, not made up with a burst).
    assert all(0.3 < gap < 3.0 for gap in gaps), 'periodic runs came %s s apart' % gaps


def test_guest_killed_mid_run_is_an_error_and_others_served(api, agent, notes, ready):
    doomed = Guest(flavour=flavour(), memory_mb=256)
    try:
        agent.add_guest(doomed)
        _wait_for_guest(api, agent, doomed.uuid)
        first = _introspect(api, agent, notes, doomed.uuid, ['pslist'])
        assert first.event_type == 'vmi.run.end', first.data
        # The agent holds the guest open and still lists it (its descriptor stays):
        # the next run starts on a guest whose QEMU is gone.
        doomed.kill()
        gone = _introspect(api, agent, notes, doomed.uuid, ['pslist', 'modules'])
        assert gone.event_type == 'vmi.run.error', gone.data
        assert gone.priority == 'ERROR'
        assert gone.data['error_type'] == 'GuestVanished', gone.data
    finally:
        doomed.close()
    assert agent.alive(), agent.log_tail()
    end = _introspect(api, agent, notes, ready.uuid, ['pslist'])
    assert end.event_type == 'vmi.run.end', end.data


def test_heartbeat_lists_the_guests(agent, notes, ready):
    beat = notes.wait_for('vmi.agent.heartbeat', timeout=30, host=agent.host)[0]
    data = beat.data
    assert data['driver'] == 'qemu'
    assert {'live', 'pause', 'trigger:debugcon'} <= set(data['capabilities'])
    guests = [g['nova_object.data']['uuid'] for g in data['guests']]
    assert ready.uuid in guests, guests


@pytest.mark.skipif(not shutil.which('rabbitmqctl'), reason='needs the local RabbitMQ')
def test_agent_survives_its_broker_connections_being_closed(api, agent, notes, ready):
    subprocess.run(['rabbitmqctl', 'close_all_connections', 'nova-vmi functional test'],
                   check=True, capture_output=True, timeout=60)
    deadline = time.monotonic() + 60
    while True:
        try:
            end = _introspect(api, agent, notes, ready.uuid, ['pslist'], timeout=10)
            break
        except AssertionError:
            # A cast sent while the agent was reconnecting is lost with its connection.
            assert time.monotonic() < deadline, ('agent never served again:\n'
                                                 + agent.log_tail())
    assert end.event_type == 'vmi.run.end', end.data
    assert agent.alive()

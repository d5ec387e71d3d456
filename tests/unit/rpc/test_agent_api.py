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

"""AgentAPI against a real oslo.messaging RPC server, in this process.

The transport is ``kombu+memory:////`` (the rabbit driver over kombu's in-memory broker):
the server, its dispatcher and the serializer are the real ones; only RabbitMQ is replaced.
"""

import datetime
import threading
import uuid

from oslo_config import cfg
import oslo_messaging as messaging
import pytest

from nova_vmi.objects import base
from nova_vmi.objects import notification
from nova_vmi.objects import policy
from nova_vmi.objects import run
from nova_vmi.rpc import agent

URL = 'kombu+memory:////'
WAIT = 10.0          # generous: a wait ends as soon as the message arrives


class RecordingEndpoint:
    """Stands in for vmi_agent.manager.AgentManager: records what arrives, answers calls."""

    target = messaging.Target(version='1.0')

    def __init__(self, host):
        self.host = host
        self.server = None
        self.received = []
        self._arrived = threading.Condition()

    def _record(self, method, **kwargs):
        with self._arrived:
            self.received.append((method, kwargs))
            self._arrived.notify_all()

    def forget(self):
        """Start a test afresh: drop what earlier tests' messages left."""
        with self._arrived:
            self.received.clear()

    def wait_for(self, count):
        """The first ``count`` messages received, waiting up to WAIT seconds for them."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.received) >= count, timeout=WAIT)
            return list(self.received)

    def introspect(self, ctxt, run):
        self._record('introspect', run=run)

    def set_policy(self, ctxt, instance_uuid, policy):
        self._record('set_policy', instance_uuid=instance_uuid, policy=policy)

    def list_guests(self, ctxt):
        self._record('list_guests')
        return [notification.VMIGuestPayload(uuid=str(uuid.UUID(int=1)), name='web-1',
                                             triggers=['debugcon'])]

    def ping(self, ctxt):
        self._record('ping')
        return {'host': self.host, 'driver': 'fake', 'version': '0.1.0'}


@pytest.fixture(scope='module')
def transport():
    """One transport for the file's client and servers.

    oslo.messaging's option groups live on the global cfg.CONF only.
    """
    transport = agent.get_transport(cfg.CONF, url=URL)
    yield transport
    transport.cleanup()


def _host():
    """A host name of this run alone (kombu's memory broker outlives a transport)."""
    return 'compute-%s' % uuid.uuid4().hex[:8]


@pytest.fixture(scope='module')
def agents(transport):
    """Two agents, ``a`` and ``b``, each a RecordingEndpoint behind a real RPC server.

    Started once for the file: stopping a server waits out its listener's 1 s poll.
    """
    endpoints, servers = {}, []
    for name in ('a', 'b'):
        endpoint = endpoints[name] = RecordingEndpoint(_host())
        server = messaging.get_rpc_server(
            transport, messaging.Target(topic=agent.TOPIC, server=endpoint.host), [endpoint],
            serializer=base.VMIObjectSerializer())
        server.start()
        servers.append(server)
        endpoint.server = server
    yield endpoints
    stoppers = [threading.Thread(target=server.stop) for server in servers]
    for stopper in stoppers:
        stopper.start()
    for stopper in stoppers:
        stopper.join()
    for server in servers:
        server.wait()


@pytest.fixture
def agent_a(agents):
    agents['a'].forget()
    return agents['a']


@pytest.fixture
def agent_b(agents):
    agents['b'].forget()
    return agents['b']


@pytest.fixture
def api(transport):
    return agent.AgentAPI(transport, timeout=WAIT)


def _request():
    return run.VMIRunRequest(
        run_id=str(uuid.uuid4()), instance_uuid=str(uuid.uuid4()), probes=['pslist'],
        trigger='on_demand', consistency='pause',
        requested_at=datetime.datetime(2026, 11, 27, 7, 0, 0, 123456,
                                       tzinfo=datetime.timezone.utc))


def test_introspect_cast_delivers_a_run_request_object(api, agent_a):
    sent = _request()
    api.introspect({}, agent_a.host, sent)
    received = agent_a.wait_for(1)
    assert [method for method, _ in received] == ['introspect'], 'one introspect cast'
    got = received[0][1]['run']
    assert isinstance(got, run.VMIRunRequest), 'the serializer should rebuild the object'
    for name in run.VMIRunRequest.fields:
        assert getattr(got, name) == getattr(sent, name), 'field %s changed in transit' % name


def test_set_policy_cast_delivers_a_policy_object(api, agent_a):
    instance = str(uuid.uuid4())
    sent = policy.VMIPolicy.default(['pslist', 'hidden_tasks'])
    sent.periodic_seconds = 60
    api.set_policy({}, agent_a.host, instance, sent)
    method, kwargs = agent_a.wait_for(1)[0]
    assert method == 'set_policy'
    assert kwargs['instance_uuid'] == instance
    assert isinstance(kwargs['policy'], policy.VMIPolicy), 'a VMIPolicy object expected'
    assert kwargs['policy'].probes == ['pslist', 'hidden_tasks']
    assert kwargs['policy'].periodic_seconds == 60
    kwargs['policy'].validate()


def test_set_policy_none_arrives_as_none(api, agent_a):
    api.set_policy({}, agent_a.host, str(uuid.uuid4()), None)
    assert agent_a.wait_for(1)[0][1]['policy'] is None, 'None resets to the default policy'


def test_list_guests_call_returns_guest_objects(api, agent_a):
    guests = api.list_guests({}, agent_a.host)
    assert len(guests) == 1 and isinstance(guests[0], notification.VMIGuestPayload), (
        'list_guests should return VMIGuestPayload objects, got %r' % (guests,))
    assert (guests[0].name, guests[0].triggers) == ('web-1', ['debugcon'])


def test_ping_call_returns_the_agents_answer(api, agent_a):
    answer = api.ping({}, agent_a.host)
    assert answer == {'host': agent_a.host, 'driver': 'fake', 'version': '0.1.0'}
    assert agent_a.received == [('ping', {})]


def test_messages_reach_only_the_named_host(api, agent_a, agent_b):
    host_a, host_b = agent_a.host, agent_b.host
    sent = [_request() for _ in range(6)]
    for request in sent:
        api.introspect({}, host_b, request)
    received = agent_b.wait_for(len(sent))
    assert sorted(kw['run'].run_id for _, kw in received) == sorted(
        r.run_id for r in sent), 'host b should get every cast addressed to it'
    for _ in range(3):
        assert api.ping({}, host_a)['host'] == host_a, 'a call to a is answered by a'
        assert api.ping({}, host_b)['host'] == host_b, 'a call to b is answered by b'
    assert [m for m, _ in agent_a.received] == ['ping'] * 3, (
        'host a should see only its own pings, not b\'s casts')


def test_servers_default_to_the_threading_executor(agents):
    """The agent's servers run their endpoints on threads.

    No executor is named (the argument is deprecated in oslo.messaging 18): without
    eventlet's monkey patching, oslo.messaging picks the threading executor.
    """
    for endpoint in agents.values():
        assert endpoint.server.executor_type == 'threading', 'a threading executor expected'


def test_call_to_a_host_without_an_agent_times_out(transport):
    short = agent.AgentAPI(transport, timeout=0.5)
    with pytest.raises(messaging.MessagingTimeout):
        short.ping({}, _host())

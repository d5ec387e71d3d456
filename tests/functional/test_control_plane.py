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

"""The whole service end to end: API, RabbitMQ, a running agent, the live guest, the
listener and the database (PostgreSQL), each its own process.

Also the listener's promise: with the database made unavailable while runs keep coming,
every run reaches the database exactly once when it returns.
"""

import secrets
import time

import pytest
import sqlalchemy as sa

from tests.functional import databases
from tools.testbed.agent import AgentProcess, RABBIT_URL
from tools.testbed.collector import NotificationCollector
from tools.testbed.controlplane import ControlPlane


@pytest.fixture(scope='module')
def database():
    with databases.fresh_database('postgresql') as created:
        yield created


@pytest.fixture(scope='module')
def stack(guest, database):
    url, _, _ = database
    with AgentProcess() as agent:
        agent.add_guest(guest)
        options = {'[listener] pool': 'e2e-%s' % secrets.token_hex(4),
                   '[listener] requeue_delay': 0.2}
        with ControlPlane(url, RABBIT_URL, topic=agent.topic, options=options) as cp, \
                NotificationCollector(RABBIT_URL, agent.topic) as notes:
            _wait_until(lambda: _instance_known(cp, agent, guest), 60,
                        'the API never learnt where the guest runs', cp, agent)
            yield agent, cp, notes


def _instance_known(cp, agent, guest):
    status, body = cp.call('GET', '/v1/agents')
    hosts = [a['host'] for a in (body or {}).get('agents', [])]
    status, _ = cp.call('GET', '/v1/instances/%s/policy' % guest.uuid)
    return agent.host in hosts and status in (200, 404)


def _wait_until(predicate, timeout, what, cp, agent):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError('%s\n--- api:\n%s\n--- listener:\n%s\n--- agent:\n%s'
                                 % (what, cp.log_tail('api'), cp.log_tail('listener'),
                                    agent.log_tail()))
        time.sleep(0.3)


def _policy(**triggers):
    return {'probes': ['pslist'], 'consistency': 'live', 'guest_trigger_rate': 1.0,
            'triggers': dict({'on_demand': True, 'periodic_seconds': None,
                              'guest': False}, **triggers)}


def test_put_policy_post_run_get_run_shows_the_real_processes(stack, guest):
    agent, cp, _ = stack
    status, body = cp.call('PUT', '/v1/instances/%s/policy' % guest.uuid,
                           _policy())
    assert status == 200, body
    pids = guest.spawn('vmi-e2e-proc')
    try:
        status, body = cp.call('POST', '/v1/instances/%s/runs' % guest.uuid,
                               {'probes': ['pslist', 'modules']})
        assert status == 202, body
        run_id = body['run']['id']
        _wait_until(lambda: cp.call('GET', '/v1/runs/%s' % run_id)[1]['run']['status']
                    in ('done', 'error'), 60, 'run %s never finished' % run_id, cp, agent)
    finally:
        guest.stop(*pids)
    status, body = cp.call('GET', '/v1/runs/%s' % run_id)
    run = body['run']
    assert run['status'] == 'done', run
    results = {r['probe']: r for r in run['results']}
    found = {p['pid']: p['comm'] for p in results['pslist']['records']}
    assert found.get(pids[0]) == 'vmi-e2e-proc', 'spawned process missing: %s' % found
    assert {1, 2} <= set(found), 'init and kthreadd are always there'
    status, body = cp.call('GET', '/v1/instances/%s/runs' % guest.uuid)
    assert run_id in [r['id'] for r in body['runs']]


def test_every_run_reaches_the_database_once_across_an_outage(stack, guest, database):
    agent, cp, notes = stack
    url, name, admin = database
    status, body = cp.call('PUT', '/v1/instances/%s/policy' % guest.uuid,
                           _policy(periodic_seconds=1))
    assert status == 200, body
    first = len(notes.matching('vmi.run.end', instance_uuid=guest.uuid,
                               trigger='periodic'))
    notes.wait_for('vmi.run.end', timeout=30, count=first + 2,
                   instance_uuid=guest.uuid, trigger='periodic')
    # The outage: no new connections, and the listener's are cut.
    with admin.connect() as connection:
        connection.execute(sa.text('ALTER DATABASE %s ALLOW_CONNECTIONS false' % name))
        connection.execute(sa.text(
            'SELECT pg_terminate_backend(pid) FROM pg_stat_activity '
            'WHERE datname = :name AND pid <> pg_backend_pid()'), {'name': name})
    during = len(notes.matching('vmi.run.end', instance_uuid=guest.uuid))
    notes.wait_for('vmi.run.end', timeout=30, count=during + 4, instance_uuid=guest.uuid)
    with admin.connect() as connection:
        connection.execute(sa.text('ALTER DATABASE %s ALLOW_CONNECTIONS true' % name))
    status, body = cp.call('PUT', '/v1/instances/%s/policy' % guest.uuid, _policy())
    assert status == 200, body
    time.sleep(2)       # a periodic run already queued may still end
    published = {n.data['run_id'] for n in notes.matching('vmi.run.end',
                                                          instance_uuid=guest.uuid)}
    assert len(published) >= during + 4

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        def stored():
            with engine.connect() as connection:
                return connection.execute(sa.text(
                    "SELECT id, status FROM runs WHERE instance_uuid = :uuid"),
                    {'uuid': guest.uuid}).all()
        _wait_until(lambda: published <= {r.id for r in stored() if r.status == 'done'},
                    60, 'runs missing from the database after the outage', cp, agent)
        rows = stored()
    finally:
        engine.dispose()
    ids = [r.id for r in rows]
    assert len(ids) == len(set(ids)), 'a run stored twice'
    assert published <= set(ids)
    assert 'database unavailable' in open(cp.services['listener'].log_path).read(), (
        'the outage should have been seen and survived by the listener')

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

"""The listener's endpoint: store once, requeue when the database is away, drop junk.

On SQLite through the real DB layer; the unavailable database is a real PostgreSQL URL
on a port nothing listens on.
"""

import oslo_messaging as messaging
import pytest

from nova_vmi import context as vmi_context
from nova_vmi.db import api as db_api
from nova_vmi import listener
from nova_vmi.objects import notification
from tests.unit.db import api_cases
from tests.unit.objects import samples

HANDLED = messaging.NotificationResult.HANDLED
REQUEUE = messaging.NotificationResult.REQUEUE


@pytest.fixture
def endpoint(tmp_path):
    db_api.configure(api_cases.migrated_conf('sqlite:///%s' % (tmp_path / 'db.sqlite')))
    yield listener.NotificationEndpoint(requeue_delay=0)
    db_api.dispose()


def _ctx():
    return vmi_context.get_admin_context()


def test_run_end_is_stored_once_however_often_it_comes(endpoint):
    run = api_cases.new_run(findings=['one', 'two'])
    for _ in range(3):
        assert endpoint.store(notification.RUN_END, run.to_primitive()) == HANDLED
    stored = db_api.run_get(_ctx(), run.run_id)
    assert stored['status'] == 'done'
    assert sorted(f['summary'] for f in stored['findings']) == ['one', 'two']
    assert len(db_api.run_list(_ctx(), instance_uuid=run.instance_uuid)) == 1


def test_a_late_start_does_not_undo_the_end(endpoint):
    end = api_cases.new_run()
    start = api_cases.payload(notification.RUN_START, run_id=end.run_id,
                              instance_uuid=end.instance_uuid)
    endpoint.store(notification.RUN_END, end.to_primitive())
    endpoint.store(notification.RUN_START, start.to_primitive())
    assert db_api.run_get(_ctx(), end.run_id)['status'] == 'done'


def test_heartbeat_records_the_agent(endpoint):
    sample = samples.load(notification.HEARTBEAT)
    assert endpoint.info({}, sample['publisher_id'], notification.HEARTBEAT,
                         sample['payload'], {}) == HANDLED
    assert [a['host'] for a in db_api.agent_list(_ctx())] == ['compute-1']


@pytest.mark.parametrize('event_type, payload', [
    ('vmi.run.end', {'nova_object.name': 'VMIRunPayload'}),
    ('vmi.run.end', 'not even a dict'),
    ('vmi.run.end', samples.load(notification.HEARTBEAT)['payload']),
    ('compute.instance.create.end', {}),
])
def test_junk_is_dropped_not_requeued(endpoint, event_type, payload):
    assert endpoint.store(event_type, payload) == HANDLED


def test_finding_notices_need_no_row(endpoint):
    sample = samples.load(notification.FINDING)
    assert endpoint.store(notification.FINDING, sample['payload']) == HANDLED
    assert db_api.finding_list(_ctx()) == []


def test_database_away_means_requeue(tmp_path):
    conf = api_cases.make_conf('postgresql+psycopg2://postgres@127.0.0.1:1/nowhere')
    conf.set_override('max_retries', 0, group='database')
    db_api.configure(conf)
    try:
        endpoint = listener.NotificationEndpoint(requeue_delay=0)
        run = api_cases.new_run()
        assert endpoint.store(notification.RUN_END, run.to_primitive()) == REQUEUE
    finally:
        db_api.dispose()

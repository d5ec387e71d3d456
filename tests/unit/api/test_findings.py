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

"""GET /v1/findings and GET /v1/instances/{uuid}/findings."""

import datetime
import uuid

from nova_vmi import context as vmi_context
from nova_vmi.db import api as db
from nova_vmi.objects import notification
from tests.unit.api import conftest as base

NOW = datetime.datetime.now(datetime.timezone.utc)


def finished_run(instance_uuid, severities):
    """A vmi.run.end as the listener stores it, with one finding per severity."""
    run_id = str(uuid.uuid4())
    findings = [notification.VMIFindingPayload(
        run_id=run_id, instance_uuid=instance_uuid, host=base.HOST, probe='hidden_tasks',
        kind='hidden_task', severity=severity, summary='pid %d hidden' % i,
        evidence={'pid': i}) for i, severity in enumerate(severities)]
    payload = notification.VMIRunPayload(
        run_id=run_id, instance_uuid=instance_uuid, host=base.HOST, trigger='on_demand',
        probes=['hidden_tasks'], consistency='live', triggered_at=NOW, started_at=NOW,
        ended_at=NOW, results=[], findings=findings)
    db.run_ended(vmi_context.get_admin_context(), payload)
    return run_id


def test_member_sees_own_projects_findings_only(env):
    finished_run(base.MINE, ['high', 'low'])
    finished_run(base.THEIRS, ['critical'])
    resp = env.client.get('/v1/findings', headers=env.reader())
    assert resp.status_code == 200, resp.json
    assert {f['instance_uuid'] for f in resp.json['findings']} == {base.MINE}, resp.json
    everything = env.client.get('/v1/findings', headers=env.admin())
    assert len(everything.json['findings']) == 3, 'an admin sees every project'


def test_severity_and_instance_filters(env):
    finished_run(base.MINE, ['high', 'low', 'high'])
    resp = env.client.get('/v1/findings?severity=high&instance=%s' % base.MINE,
                          headers=env.reader())
    assert resp.status_code == 200, resp.json
    assert [f['severity'] for f in resp.json['findings']] == ['high', 'high'], resp.json
    nested = env.client.get('/v1/instances/%s/findings?severity=low' % base.MINE,
                            headers=env.reader())
    assert [f['severity'] for f in nested.json['findings']] == ['low'], nested.json


def test_since_in_the_future_finds_nothing(env):
    finished_run(base.MINE, ['high'])
    later = (NOW + datetime.timedelta(hours=1)).strftime('%Y-%m-%dT%H:%M:%SZ')
    resp = env.client.get('/v1/findings?since=%s' % later, headers=env.admin())
    assert resp.status_code == 200 and resp.json['findings'] == [], resp.json
    earlier = (NOW - datetime.timedelta(hours=1)).strftime('%Y-%m-%dT%H:%M:%SZ')
    resp = env.client.get('/v1/findings?since=%s' % earlier, headers=env.admin())
    assert len(resp.json['findings']) == 1, resp.json


def test_bad_query_parameters_are_400(env):
    for query, words in (('severity=urgent', 'severity must be one of'),
                         ('since=yesterday', 'ISO 8601'), ('limit=-1', 'at least 1'),
                         ('marker=abc', 'marker'), ('instance=42', 'instance UUID'),
                         ('colour=red', 'unknown query parameter')):
        resp = env.client.get('/v1/findings?' + query, headers=env.admin())
        assert resp.status_code == 400, (query, resp.json)
        assert words in resp.json['error']['message'], (query, resp.json)


def test_other_projects_instance_is_404(env):
    finished_run(base.THEIRS, ['critical'])
    for path in ('/v1/findings?instance=%s' % base.THEIRS,
                 '/v1/instances/%s/findings' % base.THEIRS):
        resp = env.client.get(path, headers=env.reader())
        assert resp.status_code == 404, (path, resp.json)


def test_pagination_by_finding_id(env):
    finished_run(base.MINE, ['low', 'medium', 'high'])
    first = env.client.get('/v1/findings?limit=2', headers=env.admin())
    assert len(first.json['findings']) == 2, first.json
    [link] = first.json['links']
    rest = env.client.get(link['href'], headers=env.admin())
    assert len(rest.json['findings']) == 1 and rest.json['links'] == [], rest.json
    seen = {f['id'] for f in first.json['findings'] + rest.json['findings']}
    assert len(seen) == 3, 'pages neither repeat nor skip a finding'


def test_several_severities_comma_separated(env):
    finished_run(base.MINE, ['low', 'high', 'critical'])
    resp = env.client.get('/v1/findings?severity=high,critical', headers=env.admin())
    assert sorted(f['severity'] for f in resp.json['findings']) == ['critical', 'high'], \
        resp.json

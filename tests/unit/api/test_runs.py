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

"""POST|GET /v1/instances/{uuid}/runs and GET /v1/runs/{id}."""

import datetime
from unittest import mock

import oslo_messaging as messaging
from oslo_utils import timeutils

from nova_vmi import context as vmi_context
from nova_vmi.db import api as db
from tests.unit.api import conftest as base

MINE = '/v1/instances/%s/runs' % base.MINE


def test_member_post_returns_202_pending_run_and_casts_it(env):
    resp = env.client.post(MINE, json={'probes': ['pslist']}, headers=env.member())
    assert resp.status_code == 202, resp.json
    run = resp.json['run']
    assert run['status'] == 'pending' and run['probes'] == ['pslist'], run
    assert run['trigger'] == 'on_demand' and run['host'] == base.HOST, run
    assert resp.headers['Location'].endswith('/v1/runs/%s' % run['id']), resp.headers
    [(method, host, request)] = env.agent.calls
    assert (method, host) == ('introspect', base.HOST), env.agent.calls
    assert (request.run_id, request.instance_uuid) == (run['id'], base.MINE), \
        'the cast names the stored run'
    assert request.probes == ['pslist'] and request.consistency is None


def test_posted_run_is_readable_at_once_with_results_and_findings(env):
    run = env.client.post(MINE, json={'probes': ['idt']}, headers=env.member()).json['run']
    resp = env.client.get('/v1/runs/%s' % run['id'], headers=env.reader())
    assert resp.status_code == 200, resp.json
    got = resp.json['run']
    assert got['status'] == 'pending' and got['results'] == [] and got['findings'] == [], got


def test_empty_body_runs_the_policy_probes(env):
    env.client.put('/v1/instances/%s/policy' % base.MINE, json={'probes': ['creds']},
                   headers=env.admin())
    resp = env.client.post(MINE, headers=env.member())
    assert resp.status_code == 202, resp.json
    assert resp.json['run']['probes'] == ['creds'], 'the policy decides the probes'


def test_empty_body_without_policy_runs_every_configured_probe(env):
    resp = env.client.post(MINE, headers=env.member())
    assert resp.status_code == 202, resp.json
    assert resp.json['run']['probes'] == env.conf.api.probes, resp.json


def test_reader_may_not_request_a_run(env):
    resp = env.client.post(MINE, json={'probes': ['pslist']}, headers=env.reader())
    assert resp.status_code == 403, resp.json
    assert env.agent.calls == [], 'nothing is cast on a refusal'


def test_other_projects_instance_is_404_for_a_member(env):
    resp = env.client.post('/v1/instances/%s/runs' % base.THEIRS, json={'probes': ['idt']},
                           headers=env.member())
    assert resp.status_code == 404, resp.json
    assert resp.json['error']['message'] == 'instance %s could not be found' % base.THEIRS


def test_unknown_probe_is_a_400_listing_known_probes(env):
    resp = env.client.post(MINE, json={'probes': ['nope']}, headers=env.member())
    assert resp.status_code == 400, resp.json
    message = resp.json['error']['message']
    assert "'nope' is not one of" in message and 'pslist' in message, message


def test_no_agent_host_is_409(env):
    resp = env.client.post('/v1/instances/%s/runs' % base.HOSTLESS, headers=env.member())
    assert resp.status_code == 409, resp.json
    assert 'no agent host is known' in resp.json['error']['message'], resp.json


def test_host_without_agent_is_409(env):
    ctx = vmi_context.get_admin_context()
    db.instance_update(ctx, base.HOSTLESS, host='compute9')
    resp = env.client.post('/v1/instances/%s/runs' % base.HOSTLESS, headers=env.member())
    assert resp.status_code == 409, resp.json
    assert 'compute9' in resp.json['error']['message'], resp.json


def test_policy_without_on_demand_refuses_runs_with_409(env):
    env.client.put('/v1/instances/%s/policy' % base.MINE,
                   json={'probes': ['idt'], 'triggers': {'on_demand': False}},
                   headers=env.admin())
    resp = env.client.post(MINE, headers=env.member())
    assert resp.status_code == 409 and 'on_demand' in resp.json['error']['message'], resp.json


def test_bus_failure_is_a_503_that_says_the_run_is_stored(env):
    env.agent.fail_with = messaging.MessageDeliveryFailure('rabbit is down')
    resp = env.client.post(MINE, headers=env.member())
    assert resp.status_code == 503, resp.json
    assert 'rabbit is down' in resp.json['error']['message'], resp.json


def test_list_pages_newest_first_with_next_link(env):
    ids = [env.client.post(MINE, headers=env.member()).json['run']['id'] for _ in range(3)]
    first = env.client.get(MINE + '?limit=2', headers=env.reader())
    assert first.status_code == 200, first.json
    assert [r['id'] for r in first.json['runs']] == ids[::-1][:2], 'newest first'
    [link] = first.json['links']
    assert link['rel'] == 'next' and 'marker=%s' % ids[1] in link['href'], link
    second = env.client.get(link['href'], headers=env.reader())
    assert [r['id'] for r in second.json['runs']] == [ids[0]], second.json
    assert second.json['links'] == [], 'the last page has no next link'


def test_bad_limit_and_marker_are_400(env):
    for query, words in (('limit=ten', 'integer'), ('limit=0', 'at least 1'),
                         ('marker=%s' % base.UNKNOWN, 'marker'),
                         ('marker=xyz', 'not a valid marker (run) UUID'),
                         ('limt=5', 'unknown query parameter(s): limt')):
        resp = env.client.get(MINE + '?' + query, headers=env.reader())
        assert resp.status_code == 400, (query, resp.json)
        assert words in resp.json['error']['message'], (query, resp.json)


def test_other_projects_run_is_404_and_bad_run_id_400(env):
    run = env.client.post('/v1/instances/%s/runs' % base.THEIRS,
                          headers=env.member(base.OTHER_PROJECT)).json['run']
    resp = env.client.get('/v1/runs/%s' % run['id'], headers=env.member())
    assert resp.status_code == 404, resp.json
    assert resp.json['error']['message'] == 'run %s could not be found' % run['id']
    assert env.client.get('/v1/runs/%s' % run['id'], headers=env.admin()).status_code == 200
    bad = env.client.get('/v1/runs/123', headers=env.admin())
    assert bad.status_code == 400 and 'run UUID' in bad.json['error']['message'], bad.json


def test_host_whose_agent_is_down_is_409(env):
    ctx = vmi_context.get_admin_context()
    db.agent_heartbeat(ctx, base.heartbeat(host='compute2', guests=[base.HOSTLESS]))
    env.conf.set_override('agent_down_intervals', 1, group='api')
    # A heartbeat interval of 10 s: the agent is down 10 s after its last heartbeat.
    later = timeutils.utcnow(with_timezone=True) + datetime.timedelta(seconds=11)
    with mock.patch.object(timeutils, 'utcnow', return_value=later):
        resp = env.client.post('/v1/instances/%s/runs' % base.HOSTLESS, headers=env.member())
    assert resp.status_code == 409, resp.json
    assert 'compute2' in resp.json['error']['message'] and 'down' in \
        resp.json['error']['message'], resp.json

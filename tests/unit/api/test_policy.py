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

"""PUT/GET/DELETE /v1/instances/{uuid}/policy."""

from tests.unit.api import conftest as base

MINE = '/v1/instances/%s/policy' % base.MINE
GOOD = {'probes': ['pslist', 'modules'],
        'triggers': {'on_demand': True, 'periodic_seconds': 60, 'guest': True},
        'consistency': 'pause', 'guest_trigger_rate': 2.5}


def test_admin_put_stores_policy_and_casts_flat_vmipolicy_to_host(env):
    resp = env.client.put(MINE, json=GOOD, headers=env.admin())
    assert resp.status_code == 200, resp.json
    assert resp.json['policy']['triggers'] == GOOD['triggers'], resp.json
    assert resp.json['policy']['consistency'] == 'pause', resp.json
    [(method, host, uuid, policy)] = env.agent.calls
    assert (method, host, uuid) == ('set_policy', base.HOST, base.MINE), env.agent.calls
    assert policy.probes == ['pslist', 'modules'], 'the cast carries the probes'
    assert (policy.on_demand, policy.periodic_seconds, policy.guest) == (True, 60, True), \
        'the triggers are flat fields of VMIPolicy'
    assert policy.guest_trigger_rate == 2.5 and policy.consistency == 'pause'


def test_unset_fields_take_vmipolicy_defaults(env):
    resp = env.client.put(MINE, json={'probes': ['idt']}, headers=env.admin())
    assert resp.status_code == 200, resp.json
    assert resp.json['policy']['triggers'] == {
        'on_demand': True, 'periodic_seconds': None, 'guest': False}, resp.json
    assert resp.json['policy']['consistency'] == 'live', resp.json


def test_reader_of_project_reads_policy_in_api_form(env):
    env.client.put(MINE, json=GOOD, headers=env.admin())
    resp = env.client.get(MINE, headers=env.reader())
    assert resp.status_code == 200, resp.json
    body = resp.json['policy']
    assert body['probes'] == GOOD['probes'] and body['triggers'] == GOOD['triggers'], body
    assert body['created_at'].endswith('Z'), 'times are ISO 8601 UTC: %s' % body


def test_member_may_not_set_a_policy(env):
    resp = env.client.put(MINE, json=GOOD, headers=env.member())
    assert resp.status_code == 403, resp.json
    assert resp.json['error']['title'] == 'Forbidden', resp.json
    assert env.agent.calls == [], 'nothing is cast on a refusal'


def test_other_projects_instance_is_the_same_404_as_an_unknown_one(env):
    theirs = env.client.get('/v1/instances/%s/policy' % base.THEIRS, headers=env.member())
    unknown = env.client.get('/v1/instances/%s/policy' % base.UNKNOWN, headers=env.member())
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json['error']['message'].replace(base.THEIRS, 'X') == \
        unknown.json['error']['message'].replace(base.UNKNOWN, 'X'), \
        'the 404 must not tell another project\'s instance from a missing one'


def test_get_without_policy_says_the_default_applies(env):
    resp = env.client.get(MINE, headers=env.reader())
    assert resp.status_code == 404, resp.json
    assert 'default' in resp.json['error']['message'], resp.json


def test_unknown_probe_is_a_400_naming_the_field_and_the_probe(env):
    resp = env.client.put(MINE, json={'probes': ['pslist', 'rootkitz']}, headers=env.admin())
    assert resp.status_code == 400, resp.json
    message = resp.json['error']['message']
    assert 'probes/1' in message and 'rootkitz' in message, message
    assert resp.json['error'] == {'code': 400, 'title': 'Bad Request', 'message': message}


def test_negative_interval_is_a_400_naming_the_field(env):
    body = dict(GOOD, triggers={'periodic_seconds': -5})
    resp = env.client.put(MINE, json=body, headers=env.admin())
    assert resp.status_code == 400, resp.json
    assert 'triggers/periodic_seconds' in resp.json['error']['message'], resp.json
    assert 'minimum' in resp.json['error']['message'], resp.json


def test_unknown_field_and_bad_consistency_are_400(env):
    extra = env.client.put(MINE, json=dict(GOOD, colour='red'), headers=env.admin())
    assert extra.status_code == 400 and 'colour' in extra.json['error']['message'], extra.json
    mode = env.client.put(MINE, json=dict(GOOD, consistency='frozen'), headers=env.admin())
    assert mode.status_code == 400 and 'frozen' in mode.json['error']['message'], mode.json


def test_malformed_json_is_a_400(env):
    resp = env.client.put(MINE, data='{"probes": [', headers=env.admin(),
                          content_type='application/json')
    assert resp.status_code == 400, resp.json
    assert 'malformed JSON' in resp.json['error']['message'], resp.json


def test_oversized_body_is_refused_with_413(env):
    body = '{"probes": ["%s"]}' % ('x' * 70000)
    resp = env.client.put(MINE, data=body, headers=env.admin(),
                          content_type='application/json')
    assert resp.status_code == 413, resp.json
    assert 'limit' in resp.json['error']['message'], resp.json


def test_malformed_uuid_is_a_400(env):
    resp = env.client.get('/v1/instances/not-a-uuid/policy', headers=env.admin())
    assert resp.status_code == 400, resp.json
    assert "'not-a-uuid' is not a valid instance UUID" in resp.json['error']['message']


def test_put_without_agent_host_is_409_and_stores_nothing(env):
    path = '/v1/instances/%s/policy' % base.HOSTLESS
    resp = env.client.put(path, json=GOOD, headers=env.admin())
    assert resp.status_code == 409, resp.json
    assert 'no agent host is known' in resp.json['error']['message'], resp.json
    assert env.client.get(path, headers=env.admin()).status_code == 404, 'nothing stored'


def test_delete_removes_policy_and_casts_none(env):
    env.client.put(MINE, json=GOOD, headers=env.admin())
    resp = env.client.delete(MINE, headers=env.admin())
    assert resp.status_code == 204, resp.data
    assert env.agent.calls[-1] == ('set_policy', base.HOST, base.MINE, None), env.agent.calls
    again = env.client.delete(MINE, headers=env.admin())
    assert again.status_code == 404, 'a second DELETE finds no policy'


def test_wrong_method_is_a_json_405(env):
    resp = env.client.post(MINE, json=GOOD, headers=env.admin())
    assert resp.status_code == 405, resp.data
    assert resp.json['error']['code'] == 405, resp.json
    assert 'PUT' in resp.headers['Allow'], resp.headers


def test_body_that_is_not_an_object_or_nests_too_deeply_is_a_400(env):
    listed = env.client.put(MINE, json=['pslist'], headers=env.admin())
    assert listed.status_code == 400, listed.json
    assert "is not of type 'object'" in listed.json['error']['message'], listed.json
    deep = env.client.put(MINE, data='[' * 60000, headers=env.admin(),
                          content_type='application/json')
    assert deep.status_code == 400, deep.json

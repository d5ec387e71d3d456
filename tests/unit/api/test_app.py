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

"""The version document, agents, request ids, authentication and the paste pipeline."""

import datetime
import os

from keystonemiddleware import auth_token
from oslo_messaging import opts as messaging_opts
import werkzeug.test

from nova_vmi.api import app as api_app
from nova_vmi.api import common
from nova_vmi.api import middleware
from nova_vmi.api import pipeline
from nova_vmi import context as vmi_context
from nova_vmi.db import api as db
from nova_vmi import heartbeats
from nova_vmi.objects import run as run_obj
from tests.unit.api import conftest as base

PASTE = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'etc', 'nova-vmi',
                     'api-paste.ini')


def test_root_lists_v1_as_current_with_a_self_link(env):
    resp = env.client.get('/')
    assert resp.status_code == 200, resp.data
    [version] = resp.json['versions']
    assert (version['id'], version['status']) == ('v1', 'CURRENT'), version
    assert version['links'] == [{'rel': 'self', 'href': 'http://localhost/v1/'}], version
    assert env.client.get('/v1').json['version']['id'] == 'v1'


def test_every_response_carries_a_request_id(env):
    for path in ('/', '/v1/agents', '/v1/nothing-here'):
        resp = env.client.get(path, headers=env.admin())
        assert resp.headers.get('x-openstack-request-id', '').startswith('req-'), \
            '%s: %s' % (path, dict(resp.headers))


def test_unknown_path_is_a_json_404(env):
    resp = env.client.get('/v1/nothing-here', headers=env.admin())
    assert resp.status_code == 404, resp.data
    assert resp.json['error']['title'] == 'Not Found', resp.json


def test_admin_lists_agents_with_liveness(env):
    resp = env.client.get('/v1/agents', headers=env.admin())
    assert resp.status_code == 200, resp.json
    [agent] = resp.json['agents']
    assert agent['host'] == base.HOST and agent['driver'] == 'qemu', agent
    assert agent['capabilities'] == ['live', 'pause'] and agent['alive'] is True, agent
    assert agent['last_heartbeat'].endswith('Z'), agent


def test_agents_are_admin_only(env):
    resp = env.client.get('/v1/agents', headers=env.member())
    assert resp.status_code == 403, resp.json


def test_agent_is_dead_after_its_intervals_without_heartbeat():
    now = datetime.datetime(2026, 11, 27, 8, 0, tzinfo=datetime.timezone.utc)
    agent = {'interval': 10, 'last_heartbeat': now - datetime.timedelta(seconds=30)}
    assert heartbeats.is_alive(agent, now, 3), 'exactly 3 intervals old is still alive'
    agent['last_heartbeat'] = now - datetime.timedelta(seconds=31)
    assert not heartbeats.is_alive(agent, now, 3), 'older than 3 intervals is dead'
    assert not heartbeats.is_alive({'interval': 10, 'last_heartbeat': None}, now, 3)


def test_request_without_identity_is_401_but_versions_are_public(tmp_path):
    conf = base.make_conf(tmp_path)
    app = api_app.create_app(conf, agent_api=base.AgentAPIRecorder())
    client = app.test_client()
    assert client.get('/').status_code == 200, 'the version document needs no token'
    resp = client.get('/v1/agents')
    assert resp.status_code == 401, resp.json
    db.dispose()


def test_paste_noauth_pipeline_serves_the_api(env):
    env.conf.set_override('auth_strategy', 'noauth', group='api')
    env.conf.set_override('api_paste_config', os.path.abspath(PASTE), group='api')
    wsgi = pipeline.load_app(env.conf)
    try:
        client = werkzeug.test.Client(wsgi)
        resp = client.get('/v1/agents', headers=env.admin())
        assert resp.status_code == 200, resp.json
        assert resp.headers['x-openstack-request-id'].startswith('req-'), resp.headers
        assert client.get('/').json['versions'][0]['id'] == 'v1'
    finally:
        pipeline.set_conf(None)
        pipeline._state['apps'].clear()


def test_paste_keystone_pipeline_requires_a_token_except_for_versions(env):
    env.conf.set_override('api_paste_config', os.path.abspath(PASTE), group='api')
    # An identity service that is never reached: a request without a token is refused
    # at once.
    for group, opts in auth_token.list_opts():
        env.conf.register_opts(opts, group=group)
    env.conf.set_override('www_authenticate_uri', 'http://keystone.invalid/identity',
                          group='keystone_authtoken')
    wsgi = pipeline.load_app(env.conf)
    try:
        client = werkzeug.test.Client(wsgi)
        assert client.get('/').status_code == 200, 'the version document is public'
        resp = client.get('/v1/agents', headers=env.admin())
        assert resp.status_code == 401, 'X-Roles without a token must not pass auth_token'
        assert resp.json['error']['code'] == 401, resp.json
    finally:
        pipeline.set_conf(None)
        pipeline._state['apps'].clear()


def _app_on_database(tmp_path, connection):
    conf = base.make_conf(tmp_path)
    conf.set_override('connection', connection, group='database')
    conf.set_override('max_retries', 0, group='database')
    app = api_app.create_app(conf, agent_api=base.AgentAPIRecorder())
    app.wsgi_app = middleware.noauth_pipeline(app.wsgi_app)
    return app.test_client()


def test_unreachable_database_is_a_503(tmp_path):
    # A real MySQL driver against a closed loopback port: the connection is refused.
    client = _app_on_database(tmp_path, 'mysql+pymysql://vmi:x@127.0.0.1:1/vmi')
    try:
        resp = client.get('/v1/agents')
        assert resp.status_code == 503, resp.json
        assert 'database is unavailable' in resp.json['error']['message'], resp.json
    finally:
        db.dispose()


def test_unexpected_error_is_a_json_500_without_details(tmp_path):
    client = _app_on_database(tmp_path, 'sqlite:///%s/missing-dir/vmi.sqlite' % tmp_path)
    try:
        resp = client.get('/v1/agents')
        assert resp.status_code == 500, resp.json
        assert 'sqlite' not in resp.json['error']['message'], 'no internals in the body'
        assert resp.json['error']['title'] == 'Internal Server Error', resp.json
    finally:
        db.dispose()


def test_agent_rpc_client_is_made_lazily_on_a_private_conf(tmp_path):
    # Real oslo.messaging over kombu's in-memory transport: a cast from a private
    # ConfigOpts (as inside nova-api) must not fail on options oslo.messaging registers
    # on cfg.CONF only.
    conf = base.make_conf(tmp_path)
    for group, opts in messaging_opts.list_opts():
        conf.register_opts(opts, group=group)
    conf.set_override('transport_url', 'kombu+memory:////')
    services = common.Services(conf)
    request = run_obj.VMIRunRequest(
        run_id=base.UNKNOWN, instance_uuid=base.MINE, probes=['pslist'],
        requested_at=datetime.datetime.now(datetime.timezone.utc))
    agent_api = services.agent_api
    agent_api.introspect(vmi_context.RequestContext(), base.HOST, request)
    assert services.agent_api is agent_api, 'one client per API process'

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

"""Visibility and host from Nova, through keystoneauth1 over real HTTP.

Nova cannot run here: a small HTTP server on loopback stands for Nova's
``GET /servers/{id}`` (a caller's token sees its project's servers without the host
attribute; the service credentials see every server with it).  ``[nova] auth_type =
none`` with ``endpoint_override`` points keystoneauth1 at it.
"""

import json
import threading
import uuid

import pytest
from werkzeug import serving
from werkzeug import wrappers

from nova_vmi.api import app as api_app
from nova_vmi.api import middleware
from nova_vmi import context as vmi_context
from nova_vmi.db import api as db
from tests.unit.api import conftest as base

NEW = str(uuid.UUID(int=10))        # known to Nova only: no heartbeat has named it yet
BROKEN = str(uuid.UUID(int=11))     # Nova fails on it
SERVERS = {base.MINE: base.PROJECT, NEW: base.PROJECT, base.THEIRS: base.OTHER_PROJECT,
           BROKEN: base.PROJECT}
TOKENS = {'tok-mine': base.PROJECT, 'tok-theirs': base.OTHER_PROJECT}


@wrappers.Request.application
def fake_nova(request):
    server_id = request.path.rsplit('/', 1)[-1]
    if server_id == BROKEN:
        return wrappers.Response('oops', status=500)
    token = request.headers.get('X-Auth-Token')
    project = SERVERS.get(server_id)
    caller = TOKENS.get(token)
    if project is None or (caller is not None and caller != project):
        return wrappers.Response('{}', status=404)
    server = {'id': server_id, 'tenant_id': project, 'name': 'vm-%s' % server_id[-2:]}
    if caller is None:      # the service credentials (auth_type none) see the host
        server['OS-EXT-SRV-ATTR:host'] = base.HOST
    return wrappers.Response(json.dumps({'server': server}),
                             content_type='application/json')


@pytest.fixture(scope='module')
def nova_url():
    server = serving.make_server('127.0.0.1', 0, fake_nova, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield 'http://127.0.0.1:%d/v2.1' % server.server_port
    server.shutdown()


@pytest.fixture
def nova_env(tmp_path, nova_url, schema_db):
    conf = base.fresh_conf(tmp_path, schema_db)
    conf.set_override('auth_type', 'none', group='nova')
    conf.set_override('endpoint_override', nova_url, group='nova')
    agent = base.AgentAPIRecorder()
    app = api_app.create_app(conf, agent_api=agent)
    app.wsgi_app = middleware.noauth_pipeline(app.wsgi_app)
    base.seed(conf)
    yield base.Env(conf, app, agent)
    db.dispose()


def headers(token, project=base.PROJECT, roles='member,reader'):
    return dict(base.Env.headers(roles=roles, project=project), **{'X-Auth-Token': token})


def test_nova_hiding_a_server_is_our_404(nova_env):
    resp = nova_env.client.get('/v1/instances/%s/runs' % base.THEIRS,
                               headers=headers('tok-mine'))
    assert resp.status_code == 404, resp.json
    assert resp.json['error']['message'] == 'instance %s could not be found' % base.THEIRS


def test_server_only_nova_knows_gets_its_host_from_service_credentials(nova_env):
    resp = nova_env.client.post('/v1/instances/%s/runs' % NEW, headers=headers('tok-mine'))
    assert resp.status_code == 202, resp.json
    assert resp.json['run']['host'] == base.HOST, 'the host came from Nova'
    assert resp.json['run']['project_id'] == base.PROJECT, 'the project came from Nova'
    stored = db.instance_get(vmi_context.get_admin_context(), NEW)
    assert (stored['project_id'], stored['host']) == (base.PROJECT, base.HOST), stored


def test_nova_failure_is_a_503(nova_env):
    resp = nova_env.client.get('/v1/instances/%s/runs' % BROKEN, headers=headers('tok-mine'))
    assert resp.status_code == 503, resp.json
    assert 'HTTP 500' in resp.json['error']['message'], resp.json

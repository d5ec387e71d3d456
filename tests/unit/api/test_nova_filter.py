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

"""Routing of nova-api's ``/servers/{id}/os-introspection/...`` by the paste filter.

Both WSGI apps are recorders: this proves only which app gets a path, with which
``PATH_INFO`` and context (Nova's own harness tests the filter inside nova-api).
"""

import json

import pytest

from nova_vmi.api import common
from nova_vmi.api import nova_filter
from nova_vmi.db import api as db

SERVER = '9f1c2a1e-5d2b-4b43-9d7e-0a3f3c1b2d4e'
RUN = '2b7e0a9c-1f1e-4f0e-8f57-2d3f4a5b6c7d'


class Recorder:
    def __init__(self, status='200 OK', body=b'{}'):
        self.environs = []
        self.status = status
        self.body = body

    def __call__(self, environ, start_response):
        self.environs.append(environ)
        start_response(self.status, [('Content-Type', 'application/json')])
        return [self.body]


class NovaContext:
    """The attributes of nova.context.RequestContext the filter reads."""

    user_id = 'u1'
    project_id = 'p1'
    roles = ['member', 'reader']
    auth_token = 'tok'
    request_id = 'req-1'
    system_scope = None


def call(app, path, method='GET'):
    environ = {'PATH_INFO': path, 'SCRIPT_NAME': '/v2.1', 'REQUEST_METHOD': method,
               'nova.context': NovaContext()}
    list(app(environ, lambda status, headers: None))


@pytest.mark.parametrize('path, target', [
    ('/servers/%s/os-introspection' % SERVER, '/v1/instances/%s/runs' % SERVER),
    ('/servers/%s/os-introspection/' % SERVER, '/v1/instances/%s/runs' % SERVER),
    ('/servers/%s/os-introspection/runs' % SERVER, '/v1/instances/%s/runs' % SERVER),
    ('/servers/%s/os-introspection/runs/%s' % (SERVER, RUN), '/v1/runs/%s' % RUN),
    ('/servers/%s/os-introspection/policy' % SERVER, '/v1/instances/%s/policy' % SERVER),
    ('/servers/%s/os-introspection/findings' % SERVER,
     '/v1/instances/%s/findings' % SERVER),
    ('/servers/%s/os-introspection/bogus' % SERVER, nova_filter.UNKNOWN),
])
def test_introspection_paths_reach_our_api(path, target):
    nova, vmi = Recorder(), Recorder()
    call(nova_filter.IntrospectionFilter(nova, vmi), path)
    assert nova.environs == [], '%s must not reach Nova' % path
    [environ] = vmi.environs
    assert environ['PATH_INFO'] == target, (path, environ['PATH_INFO'])


@pytest.mark.parametrize('path', [
    '/servers/%s' % SERVER, '/servers/%s/action' % SERVER, '/servers/detail',
    '/servers/%s/os-introspections' % SERVER, '/flavors', '/',
])
def test_other_paths_go_to_nova_untouched(path):
    nova, vmi = Recorder(), Recorder()
    call(nova_filter.IntrospectionFilter(nova, vmi), path)
    assert vmi.environs == [], '%s is Nova\'s' % path
    assert nova.environs[0]['PATH_INFO'] == path


def test_context_comes_from_nova_context():
    nova, vmi = Recorder(), Recorder()
    call(nova_filter.IntrospectionFilter(nova, vmi),
         '/servers/%s/os-introspection/policy' % SERVER, method='PUT')
    ctx = vmi.environs[0][common.CONTEXT_KEY]
    assert (ctx.user_id, ctx.project_id, ctx.auth_token) == ('u1', 'p1', 'tok'), ctx
    assert ctx.roles == ['member', 'reader'] and ctx.request_id == 'req-1', ctx
    assert vmi.environs[0]['REQUEST_METHOD'] == 'PUT', 'the method is kept'


def test_visibility_is_a_get_subrequest_through_nova():
    server = {'id': SERVER, 'tenant_id': 'p1', 'name': 'web',
              'OS-EXT-SRV-ATTR:host': 'compute1'}
    nova = Recorder(body=json.dumps({'server': server}).encode())
    vmi = Recorder()
    call(nova_filter.IntrospectionFilter(nova, vmi),
         '/servers/%s/os-introspection/runs' % SERVER, method='POST')
    lookup = vmi.environs[0][common.SERVER_LOOKUP_KEY]
    found = lookup.get_server(None, SERVER)
    assert found == {'uuid': SERVER, 'project_id': 'p1', 'host': 'compute1',
                     'name': 'web'}, found
    sub = nova.environs[-1]
    assert (sub['REQUEST_METHOD'], sub['PATH_INFO']) == ('GET', '/servers/%s' % SERVER)
    hidden = nova_filter.SubrequestLookup(Recorder(status='404 Not Found'), {})
    assert hidden.get_server(None, SERVER) is None, "Nova's 404 means not visible"


def test_filter_factory_reads_its_own_config_file(tmp_path):
    conf_file = tmp_path / 'nova-vmi.conf'
    conf_file.write_text('[api]\nprobes = pslist,idt\n'
                         '[database]\nconnection = sqlite:///%s/vmi.sqlite\n' % tmp_path)
    make_filter = nova_filter.filter_factory({}, config_file=str(conf_file))
    nova = Recorder()
    wrapped = make_filter(nova)
    assert wrapped.app is nova, 'the filter wraps the rest of nova-api'
    services = wrapped.vmi_app.extensions[common.EXTENSION]
    assert services.conf.api.probes == ['pslist', 'idt'], 'our file, not nova.conf'
    call(wrapped, '/servers/detail')
    assert len(nova.environs) == 1, "Nova's own paths still reach Nova"
    db.dispose()

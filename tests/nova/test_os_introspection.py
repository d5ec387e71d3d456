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

"""The control plane's paste filter inside nova-api's pipeline, in Nova's harness.

The harness's nova-api loads an api-paste.ini that is Nova's own with
``os_introspection`` inserted after ``keystonecontext`` (as doc/nova-integration.md tells
operators), over a nova-vmi SQLite database made by ``db sync``.  Only GET routes are
asked: they need no agent (POST would cast to one over RPC).
"""

import configparser
import os
import re

import fixtures

from nova.tests.functional.api import client

from nova_vmi.api import nova_filter
from nova_vmi import context as vmi_context
from nova_vmi.db import api as db_api
from nova_vmi.db import migration
from nova_vmi.objects import policy as policy_obj
from tests.nova import base

#: Another project (hex: Nova's router takes only hex project ids).
OTHER_PROJECT = '0123456789abcdef0123456789abcdef'
UNKNOWN_SERVER = '9b2a7e4c-55f4-4d8e-a1a6-0d8f3c7a2b11'


def insert_filter(paste_ini, config_file):
    """Nova's api-paste.ini text with ``os_introspection`` after ``keystonecontext``."""
    parser = configparser.RawConfigParser()
    parser.read_string(paste_ini)
    section = 'composite:openstack_compute_api_v21'
    pipeline = parser.get(section, 'keystone')
    if not re.search(r'\bkeystonecontext\b', pipeline):
        raise AssertionError('nova api-paste.ini: no keystonecontext in %s' % section)
    parser.set(section, 'keystone', re.sub(r'\bkeystonecontext\b',
                                           'keystonecontext os_introspection', pipeline))
    filter_section = 'filter:os_introspection'
    parser.add_section(filter_section)
    parser.set(filter_section, 'paste.filter_factory',
               'nova_vmi.api.nova_filter:filter_factory')
    parser.set(filter_section, 'config_file', config_file)
    return parser


class OSIntrospectionTest(base.VMIHarness):

    def setUp(self):
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.vmi_conf_file = os.path.join(self.tmp, 'nova-vmi.conf')
        with open(self.vmi_conf_file, 'w') as out:
            out.write('[database]\nconnection = sqlite:///%s\n'
                      % os.path.join(self.tmp, 'nova-vmi.sqlite'))
        migration.db_sync(nova_filter.load_conf(self.vmi_conf_file))
        self.addCleanup(db_api.dispose)
        super().setUp()
        server = self._create_server(networks='none')
        self.server_id = server['id']
        self.other_api = client.TestOpenStackClient(
            'other-user', self.api_fixture.base_url, project_id=OTHER_PROJECT,
            roles=['reader', 'member'])
        ctx = vmi_context.get_admin_context()
        self.run_id = db_api.run_create(ctx, {
            'instance_uuid': self.server_id, 'project_id': self.api.project_id,
            'host': 'compute', 'probes': ['pslist'], 'consistency': 'live'})['id']
        db_api.policy_set(ctx, self.server_id, policy_obj.VMIPolicy.default(['pslist']))

    def api_paste_config(self):
        with open(base.nova_api_paste_ini()) as source:
            parser = insert_filter(source.read(), self.vmi_conf_file)
        path = os.path.join(self.tmp, 'api-paste.ini')
        with open(path, 'w') as out:
            parser.write(out)
        return path

    def _get(self, api, path):
        return api.api_request('/servers/%s/os-introspection%s' % (self.server_id, path))

    def assertAnswers(self, path, key):
        resp = self._get(self.api, path)
        self.assertEqual(200, resp.status_code,
                         'expected the owner to get %s: %s' % (path, resp.text))
        return resp.json()[key]

    def test_owner_lists_the_runs_of_the_server(self):
        runs = self.assertAnswers('/runs', 'runs')
        self.assertEqual([self.run_id], [run['id'] for run in runs],
                         'expected the one run of the server')
        self.assertEqual(runs, self.assertAnswers('', 'runs'),
                         'expected os-introspection itself to list the runs')

    def test_owner_reads_one_run(self):
        run = self.assertAnswers('/runs/%s' % self.run_id, 'run')
        self.assertEqual((self.run_id, self.server_id, 'pending'),
                         (run['id'], run['instance_uuid'], run['status']),
                         'expected the seeded pending run')

    def test_owner_reads_findings_and_policy(self):
        self.assertEqual([], self.assertAnswers('/findings', 'findings'),
                         'expected no findings yet')
        self.assertEqual(['pslist'], self.assertAnswers('/policy', 'policy')['probes'],
                         'expected the stored policy')

    def test_another_project_gets_404_like_an_unknown_server(self):
        for path in ('', '/runs', '/runs/%s' % self.run_id, '/findings', '/policy'):
            resp = self._get(self.other_api, path)
            self.assertEqual(404, resp.status_code,
                             'expected 404 for another project on %s' % path)
            self.assertNotIn(self.api.project_id, resp.text,
                             'expected nothing of the owner in the 404')
        hidden = self._get(self.other_api, '/findings').json()
        unknown = self.other_api.api_request(
            '/servers/%s/os-introspection/findings' % UNKNOWN_SERVER).json()
        self.assertEqual(unknown, {'error': dict(
            hidden['error'], message=hidden['error']['message'].replace(
                self.server_id, UNKNOWN_SERVER))},
            'expected "not yours" to read as "not found"')

    def test_nova_routes_pass_through_the_filter(self):
        resp = self.api.api_request('/servers/%s' % self.server_id)
        self.assertEqual(200, resp.status_code, 'expected Nova to answer its own route')
        self.assertEqual(self.server_id, resp.json()['server']['id'],
                         "expected Nova's server document")

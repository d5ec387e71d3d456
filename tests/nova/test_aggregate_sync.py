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

"""``nova-vmi-manage aggregate sync`` against the harness's real Compute API.

The agents' heartbeats are in a nova-vmi SQLite database; the sync talks to nova-api
through a keystoneauth1 adapter (the harness stubs Keystone: the adapter sends the
admin's ``X-Auth-Project-Id`` / ``X-Roles`` headers where a token would go).  The boot
afterwards shows VMIFilter using the aggregates the sync made.
"""

import datetime
import os

import fixtures
from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import session as ks_session
import sqlalchemy as sa

from nova_vmi.api import nova_filter
from nova_vmi.compute import aggregates
from nova_vmi.conf import api as api_conf
from nova_vmi import context as vmi_context
from nova_vmi.db import api as db_api
from nova_vmi.db import migration
from nova_vmi.db import models
from nova_vmi.objects import notification
from tests.nova import base

AN_HOUR_AGO = datetime.timedelta(hours=1)


class AggregateSyncTest(base.VMIHarness):

    COMPUTES = ('plain', 'qemu', 'xen')
    WEIGHTS = {'plain': 100, 'qemu': 50, 'xen': 10}

    def setUp(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        config_file = os.path.join(tmp, 'nova-vmi.conf')
        with open(config_file, 'w') as out:
            out.write('[database]\nconnection = sqlite:///%s\n'
                      % os.path.join(tmp, 'nova-vmi.sqlite'))
        self.conf = nova_filter.load_conf(config_file)
        api_conf.register_opts(self.conf)
        migration.db_sync(self.conf)
        db_api.configure(self.conf)
        self.addCleanup(db_api.dispose)
        super().setUp()
        self.heartbeat('qemu', ['live', 'pause', 'trigger:debugcon'])
        self.heartbeat('xen', ['live', 'pause', 'snapshot', 'trigger:vmfunc',
                               'trigger:rdtsc'])

    def heartbeat(self, host, capabilities):
        db_api.agent_heartbeat(vmi_context.get_admin_context(),
                               notification.VMIHeartbeatPayload(
                                   host=host, driver='qemu', capabilities=capabilities,
                                   interval=10, version='1.0', guests=[]))

    def silence(self, host):
        """The agent on ``host`` sent its last heartbeat an hour ago."""
        with db_api.get_engine().begin() as conn:
            conn.execute(sa.update(models.Agent).where(models.Agent.host == host).values(
                last_heartbeat=datetime.datetime.now(datetime.timezone.utc) - AN_HOUR_AGO))

    def adapter(self):
        """The Compute API as an admin, through the harness's intercepted endpoint."""
        admin = self.admin_api
        return ks_adapter.Adapter(
            ks_session.Session(), endpoint_override=self.api_fixture.base_url,
            additional_headers={'X-Auth-User': 'admin', 'X-User-Id': 'admin',
                                'X-Auth-Project-Id': admin.project_id,
                                'X-Roles': ','.join(admin.roles)})

    def sync(self, **kwargs):
        return aggregates.sync(self.conf, 'vmi', adapter=self.adapter(), **kwargs)

    def nova_aggregates(self):
        return {agg['name']: (sorted(agg['hosts']), agg['metadata'])
                for agg in self.admin_api.api_get('/os-aggregates').body['aggregates']}

    def test_sync_groups_live_agents_by_trigger_kinds(self):
        lines = self.sync()
        self.assertIn('add host qemu to vmi-debugcon', lines, 'expected qemu added')
        found = self.nova_aggregates()
        self.assertEqual(
            (['qemu'], {'vmi_enabled': 'true', 'vmi_triggers': 'debugcon,guest',
                        'vmi_managed_by': 'vmi'}),
            found['vmi-debugcon'], 'expected the QEMU agent in the debugcon aggregate')
        self.assertEqual(['xen'], found['vmi-rdtsc-vmfunc'][0],
                         'expected the Xen agent in the rdtsc/vmfunc aggregate')
        self.assertEqual('rdtsc,vmfunc,guest',
                         found['vmi-rdtsc-vmfunc'][1]['vmi_triggers'],
                         'expected the Xen kinds and guest')
        self.assertEqual([], self.sync(), 'expected a second sync to change nothing')

    def test_dry_run_changes_nothing(self):
        lines = self.sync(dry_run=True)
        self.assertIn('would create aggregate vmi-debugcon', lines, 'expected the plan')
        self.assertEqual({}, self.nova_aggregates(), 'expected no aggregate made')

    def test_a_silent_agent_leaves_its_aggregate(self):
        self.sync()
        self.silence('xen')
        self.assertEqual(['remove host xen from vmi-rdtsc-vmfunc'], self.sync(),
                         'expected only the silent host removed')
        self.assertEqual([], self.nova_aggregates()['vmi-rdtsc-vmfunc'][0],
                         'expected the aggregate empty')

    def test_an_agent_that_changed_kinds_moves(self):
        self.sync()
        self.heartbeat('qemu', ['live', 'pause'])
        self.sync()
        found = self.nova_aggregates()
        self.assertEqual((['qemu'], []), (found['vmi'][0], found['vmi-debugcon'][0]),
                         'expected qemu moved to the aggregate without triggers')
        self.assertNotIn('vmi_triggers', found['vmi'][1],
                         'expected no vmi_triggers where there are no guest triggers')

    def test_a_host_nova_does_not_know_is_reported_and_the_rest_done(self):
        self.heartbeat('ghost', ['live', 'trigger:debugcon'])
        exc = self.assertRaises(aggregates.SyncIncomplete, self.sync)
        self.assertIn('add host ghost to vmi-debugcon: Nova refused', str(exc),
                      'expected the refused change named')
        self.assertEqual(['qemu'], self.nova_aggregates()['vmi-debugcon'][0],
                         'expected the known host added anyway')

    def test_the_synced_aggregates_steer_vmi_boots(self):
        self.sync()
        flavor = self._create_flavor(memory_mb=512, vcpu=1, disk=1, ephemeral=0,
                                     extra_spec={'vmi:trigger': 'vmfunc'})
        server = self._create_server(flavor_id=flavor, networks='none')
        host = self.admin_api.get_server(server['id'])['OS-EXT-SRV-ATTR:host']
        self.assertEqual('xen', host, 'expected the vmfunc request on the Xen host')

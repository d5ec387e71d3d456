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

"""The harness these tests share: Nova's ``_IntegratedTestBase`` with VMIFilter enabled.

Nova's fixtures look for ``etc/nova/api-paste.ini`` relative to site-packages, but the
wheel installs it under the environment's ``etc/nova``: the base points
``[wsgi] api_paste_config`` at the file it finds, so no copying is needed.
"""

import os
import sys

import nova.conf
from nova.conf import paths
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional import integrated_helpers

CONF = nova.conf.CONF

FILTER_PATH = 'nova_vmi.scheduler.filters.VMIFilter'
FILTER_NAME = 'VMIFilter'

#: The guest-facing image of Nova's Glance fixture (no vmi_enabled property).
PLAIN_IMAGE = '155d900f-4e14-4e4c-a73d-069cbf4541e6'


def nova_api_paste_ini():
    """Nova's own api-paste.ini: beside site-packages (a source tree) or the venv's etc/."""
    for path in (paths.state_path_def('etc/nova/api-paste.ini'),
                 os.path.join(sys.prefix, 'etc', 'nova', 'api-paste.ini')):
        if os.path.exists(path):
            return path
    raise RuntimeError('nova api-paste.ini not found (is nova installed in %s?)'
                       % sys.prefix)


class VMIHarness(integrated_helpers._IntegratedTestBase):
    """Nova's API, conductor, scheduler (VMIFilter on), placement and fake computes."""

    microversion = 'latest'
    # Nova's own computes are started by each test class, by name.
    COMPUTES = ('compute',)
    #: Host weights that make the scheduler's choice deterministic.
    WEIGHTS = None

    def setUp(self):
        if self.WEIGHTS:
            self.useFixture(nova_fixtures.HostNameWeigherFixture(weights=self.WEIGHTS))
        super().setUp()

    def api_paste_config(self):
        """The api-paste.ini nova-api loads (subclasses may write their own)."""
        return nova_api_paste_ini()

    def _setup_services(self):
        self.flags(api_paste_config=self.api_paste_config(), group='wsgi')
        # Before the scheduler starts: it loads its filters once.
        enabled = list(CONF.filter_scheduler.enabled_filters)
        self.flags(available_filters=['nova.scheduler.filters.all_filters', FILTER_PATH],
                   enabled_filters=enabled + [FILTER_NAME], group='filter_scheduler')
        super()._setup_services()

    def _setup_compute_service(self):
        first, *others = self.COMPUTES
        for host in others:
            self._start_compute(host)
        return self._start_compute(first)

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

"""VMIFilter on Nova's fake host states: the cases a boot in the harness cannot reach.

Glance is the boundary replaced here (``nova.image.glance.API.get``): these tests need an
image Glance lost, and a Glance that fails.
"""

import logging
import subprocess
import sys

import fixtures
from nova import exception as nova_exception
from nova import objects
from nova import test
from nova.tests.unit.scheduler import fakes

from nova_vmi.scheduler.filters import vmi_filter

IMAGE_ID = '155d900f-4e14-4e4c-a73d-069cbf4541e6'
GLANCE_GET = 'nova.image.glance.API.get'


def host(name, *metadata):
    """A host in one aggregate per metadata dict."""
    return fakes.FakeHostState(name, name, {'aggregates': [
        objects.Aggregate(id=i, metadata=md) for i, md in enumerate(metadata)]})


def request(extra_specs=None, hints=None, image_id=IMAGE_ID, rebuild=False):
    hints = dict(hints or {})
    if rebuild:
        hints['_nova_check_type'] = ['rebuild']
    image = objects.ImageMeta.from_dict({'id': image_id} if image_id else {})
    return objects.RequestSpec(flavor=objects.Flavor(extra_specs=extra_specs or {}),
                               image=image, scheduler_hints=hints)


class VMIFilterUnitTest(test.NoDBTestCase):

    def setUp(self):
        super().setUp()
        self.filter = vmi_filter.VMIFilter()
        self.log = self.useFixture(fixtures.FakeLogger(
            name=vmi_filter.__name__, level=logging.DEBUG, format='%(message)s'))
        self.glance = self.useFixture(fixtures.MockPatch(
            GLANCE_GET, return_value={'id': IMAGE_ID, 'properties': {}})).mock
        self.vmi = host('vmi', {'vmi_enabled': 'true', 'vmi_triggers': 'debugcon,guest'})
        self.plain = host('plain')

    def passing(self, spec, *hosts):
        return [h.host for h in self.filter.filter_all(list(hosts), spec)]

    def test_request_asking_nothing_passes_every_host_after_one_glance_get(self):
        self.assertEqual(['vmi', 'plain'], self.passing(request(), self.vmi, self.plain),
                         'expected both hosts to pass')
        self.assertEqual(1, self.glance.call_count, 'expected one image read per request')

    def test_flavor_request_does_not_read_the_image(self):
        self.assertEqual(['vmi'], self.passing(request({'vmi:enabled': 'true'}),
                                               self.vmi, self.plain))
        self.glance.assert_not_called()

    def test_volume_backed_request_without_an_image_asks_nothing(self):
        self.assertEqual(['plain'], self.passing(request(image_id=None), self.plain))
        self.glance.assert_not_called()

    def test_image_glance_lost_asks_nothing(self):
        self.glance.side_effect = nova_exception.ImageNotFound(image_id=IMAGE_ID)
        self.assertEqual(['plain'], self.passing(request(), self.plain),
                         'expected a gone image to ask for nothing (moves of old servers)')

    def test_unreadable_image_rejects_every_host_with_a_reason(self):
        self.glance.side_effect = RuntimeError('glance is down')
        self.assertEqual([], self.passing(request(), self.vmi, self.plain),
                         'expected no host when the image cannot be read')
        self.assertIn('cannot read the properties of image %s: glance is down' % IMAGE_ID,
                      self.log.output, 'expected a warning naming the image')
        self.assertEqual(2, self.log.output.count('rejected'),
                         'expected one debug line per rejected host')

    def test_hint_given_twice_asks_when_any_is_true(self):
        spec = request(hints={'vmi': ['false', 'true']})
        self.assertEqual(['vmi'], self.passing(spec, self.vmi, self.plain))

    def test_aggregates_combine_triggers_but_any_false_disqualifies(self):
        split = host('split', {'vmi_enabled': 'true'}, {'vmi_triggers': 'vmfunc'})
        vetoed = host('vetoed', {'vmi_enabled': 'true', 'vmi_triggers': 'vmfunc'},
                      {'vmi_enabled': 'false'})
        spec = request({'vmi:trigger': 'vmfunc'})
        self.assertEqual(['split'], self.passing(spec, split, vetoed, self.vmi))

    def test_malformed_aggregate_value_does_not_enable(self):
        odd = host('odd', {'vmi_enabled': 'sure'})
        self.assertEqual([], self.passing(request({'vmi:enabled': 'true'}), odd))

    def test_rebuild_is_filtered_too(self):
        spec = request({'vmi:enabled': 'true'}, rebuild=True)
        self.assertEqual(['vmi'], self.passing(spec, self.vmi, self.plain),
                         'expected RUN_ON_REBUILD to keep the filter on')
        self.assertFalse(self.filter.host_passes(self.plain, spec),
                         'expected host_passes to agree with filter_all')

    def test_run_once_per_request(self):
        self.assertFalse(self.filter.run_filter_for_index(1),
                         'expected the filter skipped for the 2nd instance of a request')


class ImportsTest(test.NoDBTestCase):

    def test_nova_side_modules_import_nothing_else_of_nova_vmi(self):
        # They run inside nova-scheduler and nova-api: nothing of the control plane
        # (oslo.db models, Flask, RPC) may come along.  A fresh interpreter, so that
        # this test run's own imports do not count.
        code = ('import sys; import nova_vmi.scheduler.filters, '
                'nova_vmi.scheduler.extra_specs; '
                'print(" ".join(sorted(m for m in sys.modules if m.startswith("nova_vmi"))))')
        out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                             check=True, timeout=120).stdout.split()
        self.assertEqual(['nova_vmi', 'nova_vmi.scheduler', 'nova_vmi.scheduler.extra_specs',
                          'nova_vmi.scheduler.filters',
                          'nova_vmi.scheduler.filters.vmi_filter'], out,
                         'expected only the scheduler package and its parents')

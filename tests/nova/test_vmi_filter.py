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

"""VMIFilter and the ``vmi:*`` extra spec validators inside Nova's functional harness.

Three fake compute hosts: ``plain`` (in no VMI aggregate, and the scheduler's favourite
by weight, so a request lands elsewhere only because VMIFilter sent it there), ``qemu``
(aggregate ``vmi_enabled=true``, ``vmi_triggers=debugcon,guest``) and ``xen``
(``vmi_triggers=vmfunc,rdtsc,guest``, the least favoured).
"""

import importlib.metadata
import logging

from nova.api.validation.extra_specs import validators
from nova.compute import instance_actions
from nova.tests.functional.api import client

import fixtures

from nova_vmi.scheduler import extra_specs
from tests.nova import base

VMI_IMAGE = 'c456eb30-91d7-4f43-8f46-2efd9eccd744'  # integrated_helpers._create_image's id


class ValidatorFixture(fixtures.Fixture):
    """Registers our validators as nova-api's loader does for an installed entry point.

    Stands in for the ``nova.api.extra_spec_validators`` entry point, which exists only
    once setup.cfg declares it and the package is reinstalled.
    """

    def _setUp(self):
        ours = {validator.name: validator for validator in extra_specs.register()}
        self.useFixture(fixtures.MonkeyPatch(
            'nova.api.validation.extra_specs.validators.VALIDATORS',
            dict(validators.VALIDATORS, **ours)))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.api.validation.extra_specs.validators.NAMESPACES',
            validators.NAMESPACES | {'vmi'}))


class VMIFilterTest(base.VMIHarness):

    COMPUTES = ('plain', 'qemu', 'xen')
    WEIGHTS = {'plain': 100, 'qemu': 50, 'xen': 10}

    def setUp(self):
        self.useFixture(ValidatorFixture())
        super().setUp()
        # Nova's harness keeps INFO and up; the filter's reasons are DEBUG lines.
        self.filter_log = self.useFixture(fixtures.FakeLogger(
            name='nova_vmi.scheduler.filters.vmi_filter', level=logging.DEBUG,
            format='%(message)s'))
        self.aggregates = {
            'qemu': self._vmi_aggregate('vmi-qemu', 'qemu', 'debugcon,guest'),
            'xen': self._vmi_aggregate('vmi-xen', 'xen', 'vmfunc,rdtsc,guest'),
        }

    # -- helpers --------------------------------------------------------------------------
    def _vmi_aggregate(self, name, host, triggers):
        agg_id = self._create_aggregate(name)
        self.admin_api.add_host_to_aggregate(agg_id, host)
        self._set_metadata(agg_id, {'vmi_enabled': 'true', 'vmi_triggers': triggers})
        return agg_id

    def _set_metadata(self, agg_id, metadata):
        self.admin_api.post_aggregate_action(
            agg_id, {'set_metadata': {'metadata': metadata}})

    def _flavor(self, extra_spec=None):
        return self._create_flavor(memory_mb=512, vcpu=1, disk=1, ephemeral=0,
                                   extra_spec=extra_spec)

    def _boot(self, flavor_id=None, image=base.PLAIN_IMAGE, hints=None,
              end_status='ACTIVE'):
        body = {'server': self._build_server(image_uuid=image,
                                             flavor_id=flavor_id or self._flavor(),
                                             networks='none')}
        if hints:
            body['os:scheduler_hints'] = hints
        server = self.api.post_server(body)
        return self._wait_for_state_change(server, end_status)

    def _host_of(self, server):
        return self.admin_api.get_server(server['id'])['OS-EXT-SRV-ATTR:host']

    def assertLandsOn(self, host, server):
        self.assertEqual(host, self._host_of(server),
                         'expected the server on %s' % host)

    def assertNoValidHost(self, server):
        self.assertEqual('ERROR', server['status'], 'expected the boot to fail')
        self.assertIn('No valid host', server['fault']['message'],
                      'expected the scheduler to find no valid host')

    # -- placement ------------------------------------------------------------------------
    def test_request_asking_nothing_passes_hosts_outside_vmi_aggregates(self):
        self.assertLandsOn('plain', self._boot())

    def test_flavor_vmi_enabled_false_asks_nothing(self):
        flavor = self._flavor({'vmi:enabled': 'false'})
        self.assertLandsOn('plain', self._boot(flavor))

    def test_flavor_vmi_enabled_lands_in_a_vmi_aggregate(self):
        flavor = self._flavor({'vmi:enabled': 'true'})
        self.assertLandsOn('qemu', self._boot(flavor))
        rejected = [line for line in self.filter_log.output.splitlines()
                    if 'rejected' in line]
        self.assertEqual(1, len(rejected), 'expected one debug line: the plain host')
        self.assertIn('VMIFilter: (plain, ', rejected[0], 'expected the host named')
        self.assertIn('asks for introspection (flavor vmi:enabled=true) but no aggregate '
                      'of the host has vmi_enabled=true', rejected[0],
                      'expected the reason in the debug line')

    def test_scheduler_hint_vmi_lands_in_a_vmi_aggregate(self):
        self.assertLandsOn('qemu', self._boot(hints={'vmi': 'true'}))

    def test_image_property_vmi_enabled_lands_in_a_vmi_aggregate(self):
        self._create_image({'vmi_enabled': 'true'})
        self.assertLandsOn('qemu', self._boot(image=VMI_IMAGE))

    def test_image_property_vmi_enabled_false_asks_nothing(self):
        self._create_image({'vmi_enabled': 'false'})
        self.assertLandsOn('plain', self._boot(image=VMI_IMAGE))

    def test_vmi_request_fails_with_no_valid_host_when_no_host_is_in_a_vmi_aggregate(self):
        self.admin_api.remove_host_from_aggregate(self.aggregates['qemu'], 'qemu')
        self.admin_api.remove_host_from_aggregate(self.aggregates['xen'], 'xen')
        flavor = self._flavor({'vmi:enabled': 'true'})
        self.assertNoValidHost(self._boot(flavor, end_status='ERROR'))

    def test_aggregate_vmi_enabled_false_disqualifies_its_hosts(self):
        self._set_metadata(self.aggregates['qemu'], {'vmi_enabled': 'false'})
        flavor = self._flavor({'vmi:enabled': 'true'})
        self.assertLandsOn('xen', self._boot(flavor))

    # -- triggers -------------------------------------------------------------------------
    def test_trigger_vmfunc_lands_on_the_host_offering_it(self):
        flavor = self._flavor({'vmi:trigger': 'vmfunc'})
        self.assertLandsOn('xen', self._boot(flavor))
        self.assertIn('offer vmi_triggers=debugcon,guest, not vmfunc',
                      self.filter_log.output,
                      'expected the qemu host rejected for its triggers')

    def test_trigger_guest_accepts_any_guest_trigger(self):
        flavor = self._flavor({'vmi:trigger': 'guest'})
        self.assertLandsOn('qemu', self._boot(flavor))
        self._set_metadata(self.aggregates['qemu'], {'vmi_triggers': 'debugcon'})
        self.assertLandsOn('qemu', self._boot(flavor))

    def test_trigger_nobody_offers_fails_with_no_valid_host(self):
        self._set_metadata(self.aggregates['xen'], {'vmi_triggers': 'rdtsc,guest'})
        flavor = self._flavor({'vmi:trigger': 'vmfunc'})
        self.assertNoValidHost(self._boot(flavor, end_status='ERROR'))

    def test_trigger_implies_introspection(self):
        self._set_metadata(self.aggregates['xen'], {'vmi_enabled': None})
        flavor = self._flavor({'vmi:trigger': 'rdtsc'})
        self.assertNoValidHost(self._boot(flavor, end_status='ERROR'))

    # -- rebuild (RUN_ON_REBUILD = True) --------------------------------------------------
    def test_rebuild_to_an_image_asking_for_vmi_on_a_plain_host_fails(self):
        server = self._boot()
        self.assertLandsOn('plain', server)
        self._create_image({'vmi_enabled': 'true'})
        # CastAsCallFixture: the scheduler's NoValidHost comes back as a 500.
        self.api.api_post('/servers/%s/action' % server['id'],
                          {'rebuild': {'imageRef': VMI_IMAGE}},
                          check_response_status=[500])
        self._wait_for_action_fail_completion(
            server, instance_actions.REBUILD, 'rebuild_server')
        server = self.api.get_server(server['id'])
        self.assertEqual(base.PLAIN_IMAGE, server['image']['id'],
                         'expected the rebuild rolled back to the old image')
        self.assertNoValidHost(server)


class ExtraSpecValidatorTest(base.VMIHarness):
    """nova-api refuses malformed ``vmi:*`` extra specs (microversion 2.86+)."""

    def setUp(self):
        self.useFixture(ValidatorFixture())
        super().setUp()
        self.flavor_id = self._create_flavor(memory_mb=512, vcpu=1, disk=1, ephemeral=0)

    def _put(self, key, value):
        """PUT one extra spec; the value nova-api stored."""
        resp = self.admin_api.post_extra_spec(self.flavor_id,
                                              {'extra_specs': {key: value}})
        return resp.body['extra_specs'][key]

    def assertRefused(self, key, value, message):
        exc = self.assertRaises(client.OpenStackApiException, self._put, key, value)
        self.assertEqual(400, exc.response.status_code,
                         'expected 400 for %s=%s' % (key, value))
        self.assertIn(message, exc.response.text, 'expected the reason in the 400')

    def test_well_formed_values_are_accepted(self):
        for key, value in (('vmi:enabled', 'true'), ('vmi:enabled', 'False'),
                           ('vmi:trigger', 'guest'), ('vmi:trigger', 'vmfunc'),
                           ('vmi:trigger', 'debugcon'), ('vmi:trigger', 'rdtsc')):
            self.assertEqual(value, self._put(key, value),
                             'expected %s=%s stored' % (key, value))

    def test_vmi_enabled_must_be_boolean(self):
        self.assertRefused('vmi:enabled', 'maybe', "'maybe' is not a valid boolean-like")

    def test_vmi_trigger_must_name_a_kind(self):
        self.assertRefused('vmi:trigger', 'sometimes',
                           "'sometimes' is not one of: guest, debugcon, vmfunc, rdtsc")

    def test_unknown_key_in_the_vmi_namespace_is_refused(self):
        self.assertRefused('vmi:enable', 'true', "'vmi:enable' does not appear to be")

    def test_the_old_microversion_does_not_validate(self):
        self.admin_api.microversion = '2.85'
        self.assertEqual('maybe', self._put('vmi:enabled', 'maybe'),
                         'expected no validation before microversion 2.86')

    def test_entry_point_names_the_validators_module(self):
        names = {ep.name: ep.value for ep in importlib.metadata.entry_points(
            group='nova.api.extra_spec_validators')}
        if 'vmi' not in names:
            self.skipTest('setup.cfg does not declare the nova.api.extra_spec_validators '
                          'entry point "vmi" yet (or the package was not reinstalled)')
        self.assertEqual('nova_vmi.scheduler.extra_specs', names['vmi'],
                         'expected the vmi entry point to name our validators module')

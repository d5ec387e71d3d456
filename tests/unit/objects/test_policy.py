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

"""VMIPolicy: its default, and every value validate() refuses, with its message."""

import re

import pytest

from nova_vmi.objects import policy


def _valid(**overrides):
    values = dict(probes=['pslist'], on_demand=True, periodic_seconds=None, guest=False,
                  consistency='live', guest_trigger_rate=1.0)
    values.update(overrides)
    return policy.VMIPolicy(**values)


def test_default_policy_is_on_demand_only_and_live():
    default = policy.VMIPolicy.default(('pslist', 'hidden_tasks'))
    assert default.probes == ['pslist', 'hidden_tasks']
    assert (default.on_demand, default.periodic_seconds, default.guest) == (True, None, False)
    assert default.consistency == 'live'
    assert default.guest_trigger_rate == 1.0
    default.validate()


def test_default_policy_sets_every_field():
    default = policy.VMIPolicy.default(['pslist'])
    unset = [name for name in default.fields if not default.obj_attr_is_set(name)]
    assert not unset, 'default() should set every field, left %s' % unset


def test_default_takes_a_copy_of_the_probes():
    probes = ['pslist']
    default = policy.VMIPolicy.default(probes)
    probes.append('modules')
    assert default.probes == ['pslist']


@pytest.mark.parametrize('overrides', [
    {}, {'periodic_seconds': 1}, {'periodic_seconds': 86400}, {'guest': True},
    {'guest_trigger_rate': 1000}, {'guest_trigger_rate': 0.001}, {'consistency': 'pause'},
    {'consistency': 'snapshot'}, {'on_demand': False, 'periodic_seconds': 60},
], ids=repr)
def test_validate_accepts_honourable_policies(overrides):
    _valid(**overrides).validate()


@pytest.mark.parametrize('overrides, message', [
    ({'probes': []}, 'a policy needs at least one probe'),
    ({'periodic_seconds': 0}, 'periodic_seconds must be at least 1, not 0'),
    ({'periodic_seconds': -5}, 'periodic_seconds must be at least 1, not -5'),
    ({'guest_trigger_rate': 0.0},
     'guest_trigger_rate must be in (0, 1000] runs per second, not 0.0'),
    ({'guest_trigger_rate': -1.0},
     'guest_trigger_rate must be in (0, 1000] runs per second, not -1.0'),
    ({'guest_trigger_rate': 1000.5},
     'guest_trigger_rate must be in (0, 1000] runs per second, not 1000.5'),
    ({'guest_trigger_rate': float('nan')},
     'guest_trigger_rate must be in (0, 1000] runs per second, not nan'),
    ({'guest_trigger_rate': float('inf')},
     'guest_trigger_rate must be in (0, 1000] runs per second, not inf'),
], ids=repr)
def test_validate_refuses_what_the_agent_cannot_honour(overrides, message):
    with pytest.raises(ValueError, match='^%s$' % re.escape(message)):
        _valid(**overrides).validate()


def test_validate_refuses_a_policy_without_probes_by_name():
    with pytest.raises(ValueError, match=r'^a policy needs every field set \(default\(\) sets '
                                         r'them\); unset: probes$'):
        policy.VMIPolicy(guest=True).validate()


def test_policy_built_with_probes_only_takes_the_defaults_and_validates():
    built = policy.VMIPolicy(probes=['pslist'])
    built.validate()
    for name in built.fields:
        assert getattr(built, name) == getattr(policy.VMIPolicy.default(['pslist']), name), (
            'a left-out %s should take its default' % name)


@pytest.mark.parametrize('field, value', [
    ('consistency', 'frozen'), ('periodic_seconds', 'soon'), ('guest_trigger_rate', 'fast'),
])
def test_policy_fields_refuse_values_of_the_wrong_type(field, value):
    with pytest.raises(ValueError):
        _valid(**{field: value})


def test_policy_round_trips_through_its_primitive():
    original = _valid(probes=['pslist', 'modules'], periodic_seconds=300, guest=True,
                      consistency='pause', guest_trigger_rate=2.5)
    again = policy.VMIPolicy.from_primitive(original.to_primitive())
    for name in original.fields:
        assert getattr(again, name) == getattr(original, name), name

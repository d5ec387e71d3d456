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

"""Object fingerprints: a change to an object's fields or remotable methods must bump its
VERSION (and, for a payload, regenerate its sample), as in Nova's test_objects.py."""

from oslo_versionedobjects import fixture

import nova_vmi.objects  # noqa: F401  (registers every class)
from nova_vmi.objects import base

# name -> 'VERSION-fingerprint'.  Update an entry only together with a VERSION bump.
EXPECTED_FINGERPRINTS = {
    'VMIFindingPayload': '1.0-2bf21fe97a602fd51d73f569fa2293f3',
    'VMIGuestPayload': '1.0-b46921b6ed7d3d14e1fac673640ef327',
    'VMIHeartbeatPayload': '1.0-54a1e35fa1f94931a916fb1394ef9088',
    'VMIPolicy': '1.0-360dd63b638a428956535dd1af764886',
    'VMIProbeResultPayload': '1.0-773470fe7d98c293a587c99522bd8168',
    'VMIRunErrorPayload': '1.0-57b2a7a87a276ad034fc05ee14eaa2ec',
    'VMIRunPayload': '1.0-509aea7ca037715fb38d1a0b3c3f121b',
    'VMIRunRequest': '1.0-19cee776201dc4defc0a9a463ec92208',
}


def _our_classes():
    """Our registered classes (oslo's registry is process-wide and may hold others')."""
    return {name: classes for name, classes in base.VMIObjectRegistry.obj_classes().items()
            if issubclass(classes[0], base.VMIObject)}


def test_object_fingerprints_match_their_versions():
    checker = fixture.ObjectVersionChecker(_our_classes())
    expected, actual = checker.test_hashes(EXPECTED_FINGERPRINTS)
    assert expected == actual, (
        'Fields or remotable methods of some objects changed. Bump the VERSION of each '
        'changed object (and add a "# Version x.y: ..." line), update its entry in '
        'EXPECTED_FINGERPRINTS, and regenerate its notification sample if it is a payload. '
        'Expected %s, got %s' % (expected, actual))


def test_every_registered_object_has_a_fingerprint():
    assert set(_our_classes()) == set(EXPECTED_FINGERPRINTS), (
        'a new object needs an entry in EXPECTED_FINGERPRINTS')


def test_every_object_is_in_nova_serial_form():
    for name, (cls,) in ((n, c[:1]) for n, c in _our_classes().items()):
        assert cls.OBJ_SERIAL_NAMESPACE == 'nova_object', name
        assert cls.OBJ_PROJECT_NAMESPACE == 'nova_vmi', name

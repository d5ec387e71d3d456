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

"""Fixtures that give functional tests a live QEMU guest (see ``tools/testbed``).

``NOVA_VMI_FLAVOUR`` picks the Debian kernel flavour (``amd64``, the default, or
``cloud-amd64``, which boots about twice as fast under TCG).
"""

import os

import pytest

from tools.testbed.guest import Guest

FLAVOUR_ENV = 'NOVA_VMI_FLAVOUR'


def flavour():
    """The kernel flavour the functional tests boot."""
    return os.environ.get(FLAVOUR_ENV, 'amd64')


@pytest.fixture(scope='session')
def guest():
    """One guest for the whole session: a test leaves it as it found it."""
    with Guest(flavour=flavour()) as booted:
        yield booted


@pytest.fixture(scope='module')
def fresh_guest():
    """A guest of the test module's own, for tests that change a guest for good."""
    with Guest(flavour=flavour()) as booted:
        yield booted

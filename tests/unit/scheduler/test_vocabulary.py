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

"""The request/aggregate vocabulary VMIFilter and the aggregate sync share (stdlib only).

VMIFilter itself runs on Nova's objects: its tests are in tests/nova (``tox -e nova``).
"""

import pytest

from nova_vmi import scheduler as vocab


@pytest.mark.parametrize('text, expected', [
    ('true', True), ('True', True), (' yes ', True), ('1', True), (True, True),
    ('false', False), ('OFF', False), ('0', False), (False, False),
    ('maybe', None), ('', None), ('truee', None)])
def test_parse_bool_reads_boolean_like_strings_and_nothing_else(text, expected):
    assert vocab.parse_bool(text) is expected, 'expected %r -> %r' % (text, expected)


def test_split_kinds_ignores_blanks_and_case():
    assert vocab.split_kinds(' VMfunc, rdtsc,,guest ') == {'vmfunc', 'rdtsc', 'guest'}


@pytest.mark.parametrize('kinds, wanted, expected', [
    ({'debugcon', 'guest'}, 'guest', True),
    ({'debugcon'}, 'guest', True),            # a host that lists only its kinds
    ({'guest'}, 'guest', True),
    (set(), 'guest', False),
    ({'debugcon', 'guest'}, 'vmfunc', False),  # "guest" is not every kind
    ({'vmfunc', 'rdtsc', 'guest'}, 'vmfunc', True),
    ({'periodic'}, 'guest', False),           # not a guest-trigger kind
])
def test_offers_trigger(kinds, wanted, expected):
    assert vocab.offers_trigger(kinds, wanted) is expected, (
        'expected %s offering %s: %s' % (sorted(kinds), wanted, expected))


def test_trigger_values_are_guest_then_the_agents_kinds():
    assert vocab.TRIGGER_VALUES == ('guest', 'debugcon', 'vmfunc', 'rdtsc')


def test_the_vocabulary_module_imports_only_the_standard_library():
    # It is imported inside nova-scheduler and nova-api: nothing of ours may come along.
    source = open(vocab.__file__).read()
    imports = [line for line in source.splitlines()
               if line.startswith(('import ', 'from '))]
    assert imports == [], 'expected no imports at all, found %s' % imports

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

"""The profile store: what a second attach reads instead of unpacking a kernel again."""

import json
import os

import pytest

from tests.unit.engine.fakekernel import profile
from vmi_agent.engine.errors import ProfileError
from vmi_agent.engine.linux.profile import ProfileStore


def saved(tmp_path):
    store = ProfileStore(str(tmp_path / 'profiles'))
    prof = profile()
    prof.precompute(['task_struct'], ['module_state'], ['init_task', 'not_a_symbol'])
    store.save(prof)
    return store, prof


def test_round_trip_keeps_layouts_enums_and_declared_symbols(tmp_path):
    store, prof = saved(tmp_path)
    loaded = store.load(prof.key)
    assert (loaded.release, loaded.banner) == (prof.release, prof.banner)
    assert loaded.struct('task_struct').offset('comm') == 0x40
    assert loaded.enum('module_state')['MODULE_STATE_GOING'] == 2
    assert loaded.address('init_task') == prof.address('init_task')
    assert loaded.get_address('not_a_symbol') is None
    assert loaded.symbols.lookup(prof.address('init_task') + 8) == ('init_task', 8)


def test_saving_again_replaces_the_profile_whole(tmp_path):
    store, prof = saved(tmp_path)
    store.save(prof)
    entries = os.listdir(store.path)
    assert entries == [prof.key]               # no temporary or old directories left


def test_unknown_key_and_other_format_read_as_missing(tmp_path):
    store, prof = saved(tmp_path)
    assert store.load('0123abcd') is None
    meta = os.path.join(store.path, prof.key, 'profile.json')
    with open(meta) as f:
        data = json.load(f)
    data['format'] = 999
    with open(meta, 'w') as f:
        json.dump(data, f)
    assert store.load(prof.key) is None


@pytest.mark.parametrize('damage', ['{', '[]', '{"format": 1}'])
def test_damaged_profile_is_a_clear_error(tmp_path, damage):
    store, prof = saved(tmp_path)
    with open(os.path.join(store.path, prof.key, 'profile.json'), 'w') as f:
        f.write(damage)
    if damage == '[]':
        assert store.load(prof.key) is None
    else:
        with pytest.raises(ProfileError):
            store.load(prof.key)


def test_keys_cannot_leave_the_store(tmp_path):
    store = ProfileStore(str(tmp_path))
    for key in ('../etc', '.hidden', ''):
        with pytest.raises(ProfileError, match='bad profile key'):
            store.load(key)

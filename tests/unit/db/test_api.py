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

"""The database API on SQLite (the embedded default); the bodies are in api_cases."""

import pytest

from tests.unit.db import api_cases


class TestDBAPIOnSQLite(api_cases.DBAPICases):

    @pytest.fixture(scope='class')
    @classmethod
    def database_conf(cls, tmp_path_factory):
        path = tmp_path_factory.mktemp('db') / 'nova-vmi.sqlite'
        return api_cases.migrated_conf('sqlite:///%s' % path)

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

"""The migrations on SQLite: they build the models' schema, and db_version tells where."""

from alembic import autogenerate
from alembic import migration as alembic_migration
import sqlalchemy as sa

from nova_vmi.db import migration
from nova_vmi.db import models
from tests.unit.db import api_cases


def _sqlite_conf(tmp_path):
    return api_cases.make_conf('sqlite:///%s' % (tmp_path / 'nova-vmi.sqlite'))


def test_db_version_is_none_before_the_first_sync(tmp_path):
    assert migration.db_version(_sqlite_conf(tmp_path)) is None


def test_db_sync_upgrades_to_the_head_revision(tmp_path):
    conf = _sqlite_conf(tmp_path)
    migration.db_sync(conf)
    assert migration.db_version(conf) == migration.head_revision() == '0001'


def test_migrations_and_models_agree(tmp_path):
    conf = _sqlite_conf(tmp_path)
    migration.db_sync(conf)
    engine = sa.create_engine(conf.database.connection)
    try:
        with engine.connect() as connection:
            context = alembic_migration.MigrationContext.configure(
                connection, opts={'compare_type': True, 'compare_server_default': True})
            diff = autogenerate.compare_metadata(context, models.Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], 'the migrations should build exactly the models: %s' % diff

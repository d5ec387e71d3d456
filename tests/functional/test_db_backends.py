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

"""The database API, migrations and nova-vmi-manage on MariaDB and PostgreSQL.

The test bodies are tests/unit/db/api_cases.py's, run here on a fresh database of each
server (created for the test class and dropped after it; see ``databases.py`` for the
servers and how to point the tests at others).
"""

import concurrent.futures

from alembic import autogenerate
from alembic import migration as alembic_migration
from oslo_db import exception as oslo_db_exc
import pytest
import sqlalchemy as sa

from nova_vmi import context
from nova_vmi.cmd import manage
from nova_vmi.db import api as db_api
from nova_vmi.db import migration
from nova_vmi.db import models
from tests.functional import databases
from tests.unit.db import api_cases


@pytest.fixture(scope='module', params=sorted(databases.SERVERS))
def fresh_database(request):
    """The URL of a new, empty database on the ``request.param`` server; dropped after."""
    with databases.fresh_database(request.param) as (url, _, _):
        yield url


class TestDBAPIOnServers(api_cases.DBAPICases):
    """Every DB API case, on each server."""

    @pytest.fixture(scope='class')
    @classmethod
    def database_conf(cls, fresh_database):
        return api_cases.migrated_conf(fresh_database)

    def test_concurrent_deliveries_of_one_run_end_store_it_once(self, ctx):
        # Competing listeners: the same run.end, delivered to several at once.  The
        # losers of the insert race (duplicate key, or a deadlock on MySQL's gap locks)
        # retry and then find the row.
        end = api_cases.new_run(findings=['a', 'b'])

        def deliver(_):
            db_api.run_ended(context.get_admin_context(), end)

        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(deliver, range(8)))
        runs = db_api.run_list(ctx)
        assert [r['id'] for r in runs] == [end.run_id], 'one run row'
        assert runs[0]['findings_count'] == 2, 'each finding stored once'


def test_migrations_and_models_agree(fresh_database):
    conf = api_cases.migrated_conf(fresh_database)
    engine = sa.create_engine(conf.database.connection, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            context = alembic_migration.MigrationContext.configure(
                connection, opts={'compare_type': True})
            diff = autogenerate.compare_metadata(context, models.Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], 'the migrations should build exactly the models: %s' % diff
    assert migration.db_version(conf) == migration.head_revision()


def test_manage_db_sync_and_version(fresh_database, tmp_path, capsys):
    config_file = tmp_path / 'nova-vmi.conf'
    config_file.write_text('[database]\nconnection = %s\n' % fresh_database)
    assert manage.main(['--config-file', str(config_file), 'db', 'sync']) == 0
    assert manage.main(['--config-file', str(config_file), 'db', 'version']) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == migration.head_revision() and err == '', out + err


@pytest.mark.parametrize('backend', sorted(databases.SERVERS))
def test_manage_with_an_unreachable_server_is_one_line(backend, tmp_path, capsys):
    # Port 1 on loopback: nothing listens there, so the connection is refused at once.
    url = databases.server_url(backend).set(port=1, database='nova_vmi')
    config_file = tmp_path / 'nova-vmi.conf'
    config_file.write_text('[database]\nconnection = %s\nmax_retries = 1\nretry_interval = 0\n'
                           % url.render_as_string(hide_password=False))
    status = manage.main(['--config-file', str(config_file), 'db', 'sync'])
    out, err = capsys.readouterr()
    assert status == 1, 'a failed command exits 1'
    assert err.startswith('nova-vmi-manage: error: cannot connect to the database'), err
    assert err.count('\n') == 1 and 'Traceback' not in out + err, (
        'expected one error line, got %r' % err)


@pytest.mark.parametrize('backend', sorted(databases.SERVERS))
def test_an_unreachable_server_raises_db_connection_error(backend):
    # The listener requeues a notification on DBConnectionError: a server that is down
    # must raise that, not a driver-specific error.
    url = databases.server_url(backend).set(port=1, database='nova_vmi')
    conf = api_cases.make_conf(url.render_as_string(hide_password=False))
    conf.set_override('max_retries', 1, group='database')
    conf.set_override('retry_interval', 0, group='database')
    db_api.configure(conf)
    try:
        with pytest.raises(oslo_db_exc.DBConnectionError):
            db_api.run_list(context.get_admin_context())
    finally:
        db_api.dispose()

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

"""Fresh databases on the local MariaDB and PostgreSQL servers, for functional tests.

The servers default to ``mysql+pymysql://root@127.0.0.1:3306`` and
``postgresql+psycopg2://postgres@127.0.0.1:5432``; ``NOVA_VMI_MYSQL_URL`` and
``NOVA_VMI_PGSQL_URL`` override them (the server part only: each test database gets a
name of its own).
"""

import contextlib
import os

from oslo_utils import uuidutils
import pytest
import sqlalchemy as sa

from nova_vmi.db import api as db_api

SERVERS = {
    'mysql': ('NOVA_VMI_MYSQL_URL', 'mysql+pymysql://root@127.0.0.1:3306'),
    'postgresql': ('NOVA_VMI_PGSQL_URL', 'postgresql+psycopg2://postgres@127.0.0.1:5432'),
}
#: The database each server has for the test to connect to while it creates its own.
ADMIN_DATABASE = {'mysql': None, 'postgresql': 'postgres'}


def server_url(backend):
    variable, default = SERVERS[backend]
    return sa.engine.make_url(os.environ.get(variable, default))


@contextlib.contextmanager
def fresh_database(backend):
    """``(url, name, admin engine)`` of a new, empty database; dropped afterwards.

    The admin engine (autocommit, on the server's own database) lets a test act on the
    database from outside, e.g. refuse its connections for a while.
    """
    server = server_url(backend)
    name = 'nova_vmi_test_%s' % uuidutils.generate_uuid(dashed=False)[:12]
    admin = sa.create_engine(server.set(database=ADMIN_DATABASE[backend]),
                             isolation_level='AUTOCOMMIT', poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as connection:
            connection.execute(sa.text('CREATE DATABASE %s' % name))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail('the %s server at %s is not reachable: %s'
                    % (backend, server.render_as_string(hide_password=True), exc))
    try:
        yield server.set(database=name).render_as_string(hide_password=False), name, admin
    finally:
        db_api.dispose()
        drop = 'DROP DATABASE %s' + (' WITH (FORCE)' if backend == 'postgresql' else '')
        with admin.connect() as connection:
            connection.execute(sa.text(drop % name))
        admin.dispose()

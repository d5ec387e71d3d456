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

"""Schema migrations: upgrade a database to the newest revision, or say which it is at.

Alembic is configured here in code (its scripts are the ``migrations`` package), so
nothing depends on the working directory or an ``alembic.ini``.
"""

import contextlib

from alembic import command
from alembic import config as alembic_config
from alembic import migration as alembic_migration
from alembic import script as alembic_script
from oslo_db.sqlalchemy import enginefacade

from nova_vmi.db import api

SCRIPT_LOCATION = 'nova_vmi.db:migrations'


def alembic_config_for(connection=None, url=None):
    """An alembic Config that migrates ``connection`` (or, failing that, ``url``)."""
    config = alembic_config.Config()
    config.set_main_option('script_location', SCRIPT_LOCATION)
    if url is not None:
        # The main options are interpolated: a password's '%' must be doubled.
        config.set_main_option('sqlalchemy.url', url.replace('%', '%%'))
    config.attributes['connection'] = connection
    return config


def head_revision():
    """The newest revision the migrations know."""
    return alembic_script.ScriptDirectory.from_config(alembic_config_for()).get_current_head()


@contextlib.contextmanager
def _engine(conf):
    """An engine of ``conf``'s database of its own, closed afterwards.

    Made with oslo.db like the API's (same options: retries, MySQL's sql_mode...), but
    not the API's, so that migrating does not reconfigure the running process.
    """
    manager = enginefacade.transaction_context()
    manager.configure(**api.db_options(conf))
    engine = manager.writer.get_engine()
    try:
        yield engine
    finally:
        engine.dispose()


def db_sync(conf, revision='head'):
    """Upgrade ``conf``'s database to ``revision`` (the newest by default)."""
    with _engine(conf) as engine, engine.begin() as connection:
        command.upgrade(alembic_config_for(connection), revision)


def db_version(conf):
    """The revision ``conf``'s database is at; None before the first db_sync()."""
    with _engine(conf) as engine, engine.connect() as connection:
        return alembic_migration.MigrationContext.configure(connection).get_current_revision()

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

"""``nova-vmi-manage``: the operator's database and aggregate commands.

``db sync`` upgrades the schema, ``db version`` prints its revision, ``db purge`` deletes
old runs and their findings.  ``aggregate sync`` makes Nova's VMI host aggregates match
the live agents (:mod:`nova_vmi.compute.aggregates`).  A failure is one line on stderr
and exit status 1 (2 for a malformed command line), never a traceback.
"""

from nova_vmi import threading_backend  # noqa: F401  (first: before oslo.messaging)

import datetime
import sys

from alembic import util as alembic_util
from keystoneauth1 import exceptions as ks_exceptions
from oslo_config import cfg
from oslo_db import exception as oslo_db_exc
from oslo_log import log as logging
import sqlalchemy as sa

from nova_vmi import context
from nova_vmi.compute import aggregates
from nova_vmi.compute import nova as nova_client
from nova_vmi.conf import api as api_conf
from nova_vmi.conf import database
from nova_vmi.conf import nova as nova_conf
from nova_vmi.db import api as db_api
from nova_vmi.db import exception as db_exception
from nova_vmi.db import migration

PROG = 'nova-vmi-manage'

#: What a command may fail with that is the database's or the operator's doing.
_EXPECTED_ERRORS = (oslo_db_exc.DBError, db_exception.DBError, sa.exc.SQLAlchemyError,
                    alembic_util.CommandError, OSError, ValueError,
                    ks_exceptions.ClientException, nova_client.NovaUnavailable,
                    aggregates.SyncIncomplete)


def db_sync(conf):
    migration.db_sync(conf)
    print('database upgraded to revision %s' % migration.db_version(conf))


def db_version(conf):
    print(migration.db_version(conf) or 'None (run "%s db sync")' % PROG)


def db_purge(conf):
    before = purge_cutoff(conf.category.before_days, conf.category.before)
    db_api.configure(conf)
    try:
        count = db_api.run_purge(context.get_admin_context(), before)
    finally:
        db_api.dispose()
    print('purged %d run(s) created before %s' % (count, before.isoformat()))


def aggregate_sync(conf):
    for line in aggregates.sync(conf, conf.category.prefix, conf.category.dry_run):
        print(line)


def purge_cutoff(before_days, before, now=None):
    """The aware UTC time ``--before-days`` or ``--before`` names."""
    if before is not None:
        return before
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now - datetime.timedelta(days=before_days)


def _days(text):
    days = int(text)
    if days < 0:
        raise ValueError(text)
    return days


_days.__name__ = 'number of days'  # argparse names the type in its error message


def _utc_time(text):
    """An ISO 8601 date or time; without an offset it is UTC."""
    when = datetime.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when


_utc_time.__name__ = 'ISO 8601 date or time'


def _add_command_parsers(subparsers):
    subparsers.required = True
    db = subparsers.add_parser('db', help='the control plane database')
    actions = db.add_subparsers(dest='action', metavar='{sync,version,purge}')
    actions.required = True
    actions.add_parser('sync', help='upgrade the schema to the newest revision'
                       ).set_defaults(func=db_sync)
    actions.add_parser('version', help="print the schema's revision"
                       ).set_defaults(func=db_version)
    purge = actions.add_parser('purge', help='delete old runs and their findings')
    cutoff = purge.add_mutually_exclusive_group(required=True)
    cutoff.add_argument('--before-days', type=_days, metavar='N',
                        help='delete the runs created more than N days ago')
    cutoff.add_argument('--before', type=_utc_time, metavar='DATE',
                        help='delete the runs created before DATE (ISO 8601; UTC unless '
                             'it has an offset)')
    purge.set_defaults(func=db_purge)
    aggregate = subparsers.add_parser('aggregate', help="Nova's VMI host aggregates")
    aggregate_actions = aggregate.add_subparsers(dest='action', metavar='{sync}')
    aggregate_actions.required = True
    sync = aggregate_actions.add_parser(
        'sync', help="make the VMI aggregates' hosts and vmi_triggers match the live "
                     "agents (through the Compute API, with [nova]'s credentials)")
    sync.add_argument('--prefix', default='vmi',
                      help='name of the aggregates (<prefix>, <prefix>-<kinds>...)')
    sync.add_argument('--dry-run', action='store_true',
                      help='print the changes without making them')
    sync.set_defaults(func=aggregate_sync)


category_opt = cfg.SubCommandOpt('category', title='Commands', help='the command to run',
                                 handler=_add_command_parsers)


def _one_line(exc):
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else exc.__class__.__name__
    if isinstance(exc, oslo_db_exc.DBConnectionError):
        return 'cannot connect to the database: %s' % text
    return text


def main(argv=None):
    conf = cfg.ConfigOpts()
    conf.register_cli_opt(category_opt)
    logging.register_options(conf)
    # alembic's INFO lines ("Context impl ...") are noise beside our one-line answers.
    conf.set_default('default_log_levels',
                     logging.get_default_log_levels() + ['alembic=WARN'])
    database.register_opts(conf)
    api_conf.register_opts(conf)
    nova_conf.register_opts(conf)
    try:
        conf(sys.argv[1:] if argv is None else argv, project='nova-vmi', prog=PROG)
    except cfg.Error as exc:
        print('%s: error: %s' % (PROG, _one_line(exc)), file=sys.stderr)
        return 2
    logging.setup(conf, PROG)
    try:
        conf.category.func(conf)
    except _EXPECTED_ERRORS as exc:
        print('%s: error: %s' % (PROG, _one_line(exc)), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())

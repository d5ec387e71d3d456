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

"""What the v1 commands share: calling the client, naming servers, showing values.

A command's failure is one :class:`osc_lib.exceptions.CommandError` line (openstack
prints it and exits 1).  Values that are lists or dicts become osc-lib formattable
columns, so ``-f table`` shows them readably and ``-f json``/``yaml`` keep their
structure.
"""

from osc_lib.cli import format_columns
from osc_lib import exceptions
from oslo_utils import uuidutils

from nova_vmi.osc import client as introspection_client


def api(app):
    """The introspection client of the running ``openstack`` app."""
    return app.client_manager.introspection


def call(function, *args, **kwargs):
    """``function(*args, **kwargs)``, with a client error made a CommandError."""
    try:
        return function(*args, **kwargs)
    except introspection_client.ClientError as exc:
        raise exceptions.CommandError(str(exc))


def resolve_server(app, server):
    """The instance UUID of ``server``: a UUID as is, a name through Nova."""
    if uuidutils.is_uuid_like(server):
        return server
    if not nova_configured(app.client_manager.get_configuration()):
        raise exceptions.CommandError(
            'server %r is not a UUID, and without authentication (--os-auth-type none) '
            'there is no Nova to resolve a name: give the server\'s UUID' % server)
    try:
        compute = app.client_manager.compute
        found = compute.find_server(server, ignore_missing=False)
    except Exception as exc:  # noqa: B902 - any Nova or SDK failure is one line
        detail = ' '.join(str(exc).split())[:300] or type(exc).__name__
        raise exceptions.CommandError(
            'server %r is not a UUID and Nova could not resolve it: %s'
            % (server, detail))
    return found.id


def nova_configured(config):
    """Whether osc can reach Nova: through Keystone, or an explicit compute endpoint."""
    if config.get('auth_type') != 'none':
        return True
    return any(config.get(key) for key in ('compute_endpoint_override',
                                           'compute_endpoint')) or bool(
        (config.get('auth') or {}).get('endpoint'))


def column(value):
    """``value`` as a cell: lists and dicts as formattable columns."""
    if isinstance(value, list) and all(not isinstance(item, (dict, list))
                                       for item in value):
        return format_columns.ListColumn(value)
    if isinstance(value, dict):
        return format_columns.DictColumn(value)
    if isinstance(value, list):
        return format_columns.ListDictColumn(value)
    return value


def row(item, columns):
    """The values of ``columns`` in the dict ``item`` (missing ones None)."""
    return tuple(column(item.get(name)) for name in columns)

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

"""``openstack server introspection policy set | show | unset <server>``.

An instance's policy says which probes run, what triggers them and how memory is read.
``set`` changes only the fields it is given: it reads the current policy (if any) and
writes the whole policy back, since the API's PUT replaces it.
"""

import argparse

from osc_lib.command import command
from osc_lib import exceptions

from nova_vmi.osc import client as introspection_client
from nova_vmi.osc.v1 import common

CONSISTENCIES = ('live', 'pause', 'snapshot')
COLUMNS = ('instance_uuid', 'probes', 'on_demand', 'periodic_seconds', 'guest_trigger',
           'consistency', 'guest_trigger_rate', 'created_at', 'updated_at')


def positive_int(text):
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError('%r is not an integer' % text)
    if value < 1:
        raise argparse.ArgumentTypeError('%r must be at least 1' % text)
    return value


def positive_float(text):
    """argparse type: a number greater than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError('%r is not a number' % text)
    if not value > 0:
        raise argparse.ArgumentTypeError('%r must be greater than 0' % text)
    return value


def flatten(instance_uuid, policy):
    """The API's policy as one flat dict of COLUMNS."""
    triggers = policy.get('triggers') or {}
    return {
        'instance_uuid': instance_uuid,
        'probes': policy.get('probes'),
        'on_demand': triggers.get('on_demand'),
        'periodic_seconds': triggers.get('periodic_seconds'),
        'guest_trigger': triggers.get('guest'),
        'consistency': policy.get('consistency'),
        'guest_trigger_rate': policy.get('guest_trigger_rate'),
        'created_at': policy.get('created_at'),
        'updated_at': policy.get('updated_at'),
    }


def merged_policy(current, args):
    """The body to PUT: ``current`` (a stored policy or None) changed by ``args``.

    Raises ValueError when the result would have no probes.
    """
    current = current or {}
    triggers = dict(current.get('triggers') or {})
    if args.on_demand is not None:
        triggers['on_demand'] = args.on_demand
    if args.guest_trigger is not None:
        triggers['guest'] = args.guest_trigger
    if args.no_periodic:
        triggers['periodic_seconds'] = None
    elif args.periodic is not None:
        triggers['periodic_seconds'] = args.periodic
    body = {'probes': args.probes or current.get('probes'), 'triggers': triggers}
    if not body['probes']:
        raise ValueError('the server has no introspection policy yet: give at least one '
                         '--probe')
    consistency = args.consistency or current.get('consistency')
    if consistency:
        body['consistency'] = consistency
    rate = args.guest_trigger_rate
    if rate is None:
        rate = current.get('guest_trigger_rate')
    if rate is not None:
        body['guest_trigger_rate'] = rate
    return body


def _server_argument(parser):
    parser.add_argument('server', metavar='<server>',
                        help='Server (name or ID; a name is resolved through Nova)')


def _toggle(parser, name, dest, help_on, help_off):
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--' + name, dest=dest, action='store_true', default=None,
                       help=help_on)
    group.add_argument('--no-' + name, dest=dest, action='store_false', help=help_off)


class SetPolicy(command.ShowOne):
    """Set (or change) the introspection policy of a server (admin)."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        _server_argument(parser)
        parser.add_argument('--probe', metavar='<probe>', dest='probes', action='append',
                            help='Probe to run (repeat for several; replaces the '
                                 'policy\'s list); required for a server without a '
                                 'policy')
        periodic = parser.add_mutually_exclusive_group()
        periodic.add_argument('--periodic', metavar='<seconds>', type=positive_int,
                              help='Run the probes every <seconds> seconds')
        periodic.add_argument('--no-periodic', action='store_true',
                              help='No periodic runs')
        _toggle(parser, 'guest-trigger', 'guest_trigger',
                'The guest may trigger runs itself', 'The guest may not trigger runs')
        _toggle(parser, 'on-demand', 'on_demand',
                'Allow on-demand runs (openstack server introspection run)',
                'Refuse on-demand runs')
        parser.add_argument('--consistency', choices=CONSISTENCIES,
                            help='How the agent reads changing memory')
        parser.add_argument('--guest-trigger-rate', metavar='<per-second>',
                            type=positive_float,
                            help='Guest-triggered runs per second at most')
        return parser

    def take_action(self, parsed_args):
        uuid = common.resolve_server(self.app, parsed_args.server)
        client = common.api(self.app)
        current = common.call(_get_or_none, client, uuid)
        try:
            body = merged_policy(current, parsed_args)
        except ValueError as exc:
            raise exceptions.CommandError(str(exc))
        stored = common.call(client.set_policy, uuid, body)
        return COLUMNS, common.row(flatten(uuid, stored), COLUMNS)


def _get_or_none(client, uuid):
    try:
        return client.get_policy(uuid)
    except introspection_client.ClientError as exc:
        if exc.status == 404:
            return None
        raise


class ShowPolicy(command.ShowOne):
    """Show the introspection policy of a server."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        _server_argument(parser)
        return parser

    def take_action(self, parsed_args):
        uuid = common.resolve_server(self.app, parsed_args.server)
        policy = common.call(common.api(self.app).get_policy, uuid)
        return COLUMNS, common.row(flatten(uuid, policy), COLUMNS)


class UnsetPolicy(command.Command):
    """Remove the introspection policy of a server (admin): back to on-demand runs only."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        _server_argument(parser)
        return parser

    def take_action(self, parsed_args):
        uuid = common.resolve_server(self.app, parsed_args.server)
        common.call(common.api(self.app).delete_policy, uuid)

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

"""``openstack server introspection finding list``: what the probes found, newest first."""

from osc_lib.command import command

from nova_vmi.osc.v1 import common

SEVERITIES = ('low', 'medium', 'high', 'critical')
COLUMNS = ('id', 'severity', 'probe', 'kind', 'summary', 'instance_uuid', 'run_id',
           'created_at')
LONG_COLUMNS = COLUMNS + ('host', 'evidence')


class ListFindings(command.Lister):
    """List introspection findings (of one server, or of every server you may see)."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--server', metavar='<server>',
                            help='Only this server\'s findings (name or ID)')
        parser.add_argument('--severity', metavar='<severity>', action='append',
                            choices=SEVERITIES,
                            help='Only findings of this severity (repeat for several: '
                                 '%s)' % ', '.join(SEVERITIES))
        parser.add_argument('--since', metavar='<time>',
                            help='Only findings created at or after this ISO 8601 time '
                                 '(e.g. 2026-11-27T08:00:00Z)')
        parser.add_argument('--limit', metavar='<n>', type=int,
                            help='Show at most <n> findings')
        parser.add_argument('--marker', metavar='<finding-id>',
                            help='Start after this finding')
        parser.add_argument('--long', action='store_true',
                            help='Show the host and the evidence too')
        return parser

    def take_action(self, parsed_args):
        uuid = None
        if parsed_args.server:
            uuid = common.resolve_server(self.app, parsed_args.server)
        severity = None
        if parsed_args.severity:
            severity = ','.join(dict.fromkeys(parsed_args.severity))
        findings = common.call(common.api(self.app).list_findings, instance_uuid=uuid,
                               severity=severity, since=parsed_args.since,
                               limit=parsed_args.limit, marker=parsed_args.marker)
        names = LONG_COLUMNS if parsed_args.long else COLUMNS
        return names, [common.row(finding, names) for finding in findings]

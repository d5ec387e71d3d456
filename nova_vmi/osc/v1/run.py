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

"""``openstack server introspection run | list <server>`` and ``... show <run-id>``.

``run --wait`` polls the run until the agent has finished it, telling the progress on
stderr, and ends with the run and its results, one block of records per probe.
"""

import time

from cliff import columns
from osc_lib.command import command
from osc_lib import exceptions
import prettytable

from nova_vmi.osc.v1 import common

CONSISTENCIES = ('live', 'pause', 'snapshot')
FINAL_STATUSES = ('done', 'error')
SHOW_COLUMNS = ('id', 'instance_uuid', 'project_id', 'host', 'status', 'trigger',
                'trigger_detail', 'probes', 'consistency', 'coalesced', 'kernel_release',
                'requested_at', 'triggered_at', 'started_at', 'ended_at', 'pause_seconds',
                'error', 'error_type', 'results_count', 'findings_count', 'created_at',
                'updated_at', 'results', 'findings')
LIST_COLUMNS = ('id', 'status', 'trigger', 'probes', 'findings_count', 'created_at',
                'ended_at')
LONG_COLUMNS = LIST_COLUMNS + ('host', 'consistency', 'started_at', 'error')
# What a table shows of one probe's records; -f json/yaml show them all.
MAX_TABLE_RECORDS = 500
MAX_CELL = 64
# How often --wait says it is still waiting when the status does not change.
REMIND_SECONDS = 10.0


def _cell(value):
    text = '' if value is None else str(value)
    return text if len(text) <= MAX_CELL else text[:MAX_CELL - 3] + '...'


def records_table(records):
    """A text table of a probe's records (dicts), columns in first-seen order."""
    names = []
    for record in records[:MAX_TABLE_RECORDS]:
        for name in (record if isinstance(record, dict) else {'value': record}):
            if name not in names:
                names.append(name)
    table = prettytable.PrettyTable(names or ['value'])
    table.align = 'l'
    for record in records[:MAX_TABLE_RECORDS]:
        record = record if isinstance(record, dict) else {'value': record}
        table.add_row([_cell(record.get(name)) for name in names])
    text = table.get_string()
    if len(records) > MAX_TABLE_RECORDS:
        text += '\n... %d more records (-f json or -f yaml shows them all)' % (
            len(records) - MAX_TABLE_RECORDS)
    return text


def probe_heading(result):
    """One line about a probe's result: name, record count, duration, error."""
    records = result.get('records') or []
    line = '%s: %d record%s' % (result.get('probe'), len(records),
                                '' if len(records) == 1 else 's')
    if result.get('seconds') is not None:
        line += ' in %.6fs' % result['seconds']
    if result.get('error'):
        line += ', error: %s' % result['error']
    return line


class ResultsColumn(columns.FormattableColumn):
    """A run's results: a table of records per probe for people, the list for tools."""

    def human_readable(self):
        blocks = []
        for result in self._value or []:
            block = probe_heading(result)
            if result.get('records'):
                block += '\n' + records_table(result['records'])
            blocks.append(block)
        return '\n'.join(blocks)

    def machine_readable(self):
        return self._value


class FindingsColumn(columns.FormattableColumn):
    """A run's findings: one line each for people, the list for tools."""

    def human_readable(self):
        return '\n'.join('[%s] %s/%s: %s' % (f.get('severity'), f.get('probe'),
                                             f.get('kind'), f.get('summary'))
                         for f in self._value or [])

    def machine_readable(self):
        return self._value


def show_run(run):
    """``(columns, values)`` of a run for ShowOne."""
    values = list(common.row(run, SHOW_COLUMNS))
    values[SHOW_COLUMNS.index('results')] = ResultsColumn(run.get('results') or [])
    values[SHOW_COLUMNS.index('findings')] = FindingsColumn(run.get('findings') or [])
    return SHOW_COLUMNS, tuple(values)


class RunWaiter:
    """Polls a run until it is done or failed, reporting status changes on ``out``."""

    def __init__(self, get_run, out, interval=1.0, timeout=600.0,
                 clock=time.monotonic, sleep=time.sleep):
        self.get_run = get_run
        self.out = out
        self.interval = interval
        self.timeout = timeout
        self.clock = clock
        self.sleep = sleep

    def wait(self, run):
        start = self.clock()
        status, reminded = None, start
        while True:
            now = self.clock()
            if run['status'] != status or now - reminded >= REMIND_SECONDS:
                status, reminded = run['status'], now
                self._say(run, now - start)
            if run['status'] in FINAL_STATUSES:
                return run
            if now - start >= self.timeout:
                raise exceptions.CommandError(
                    'run %s is still %s after %ds: stopped waiting (see: openstack '
                    'server introspection show %s)' % (run['id'], run['status'],
                                                       self.timeout, run['id']))
            self.sleep(self.interval)
            run = self.get_run(run['id'])

    def _say(self, run, elapsed):
        detail = ''
        if run['status'] == 'running' and run.get('host'):
            detail = ' on %s' % run['host']
        self.out.write('run %s: %s%s (%.0fs)\n' % (run['id'], run['status'], detail,
                                                   elapsed))
        self.out.flush()


class CreateRun(command.ShowOne):
    """Ask for an introspection run of a server now (--wait for its results)."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>',
                            help='Server (name or ID; a name is resolved through Nova)')
        parser.add_argument('--probe', metavar='<probe>', dest='probes', action='append',
                            help='Probe to run (repeat for several; default: the '
                                 'policy\'s probes, else every probe)')
        parser.add_argument('--consistency', choices=CONSISTENCIES,
                            help='How to read memory (default: the policy\'s)')
        parser.add_argument('--wait', action='store_true',
                            help='Wait for the run to end, showing its progress on '
                                 'stderr, and show its results')
        parser.add_argument('--timeout', metavar='<seconds>', type=float, default=600.0,
                            help='With --wait: give up after <seconds> (default 600)')
        parser.add_argument('--poll-interval', metavar='<seconds>', type=float,
                            default=1.0, help='With --wait: seconds between polls')
        return parser

    def take_action(self, parsed_args):
        uuid = common.resolve_server(self.app, parsed_args.server)
        client = common.api(self.app)
        run = common.call(client.create_run, uuid, probes=parsed_args.probes,
                          consistency=parsed_args.consistency)
        if parsed_args.wait:
            waiter = RunWaiter(lambda run_id: common.call(client.get_run, run_id),
                               self.app.stderr, interval=parsed_args.poll_interval,
                               timeout=parsed_args.timeout)
            run = waiter.wait(run)
            if run['status'] == 'error':
                raise exceptions.CommandError('run %s failed: %s%s' % (
                    run['id'], run.get('error') or 'no error message',
                    ' (%s)' % run['error_type'] if run.get('error_type') else ''))
        return show_run(run)


class ListRuns(command.Lister):
    """List a server's introspection runs, newest first."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>',
                            help='Server (name or ID; a name is resolved through Nova)')
        parser.add_argument('--limit', metavar='<n>', type=int,
                            help='Show at most <n> runs')
        parser.add_argument('--marker', metavar='<run-id>',
                            help='Start after this run')
        parser.add_argument('--long', action='store_true',
                            help='Show the host, consistency, start time and error too')
        return parser

    def take_action(self, parsed_args):
        uuid = common.resolve_server(self.app, parsed_args.server)
        runs = common.call(common.api(self.app).list_runs, uuid,
                           limit=parsed_args.limit, marker=parsed_args.marker)
        names = LONG_COLUMNS if parsed_args.long else LIST_COLUMNS
        return names, [common.row(run, names) for run in runs]


class ShowRun(command.ShowOne):
    """Show an introspection run: status, timings, results per probe and findings."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('run', metavar='<run-id>', help='Run ID')
        return parser

    def take_action(self, parsed_args):
        return show_run(common.call(common.api(self.app).get_run, parsed_args.run))

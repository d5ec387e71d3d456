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

"""The commands' pure parts: argument parsing, the policy merge, formatting, waiting."""

import io

from osc_lib import exceptions
import pytest

from nova_vmi.osc.v1 import agent
from nova_vmi.osc.v1 import common
from nova_vmi.osc.v1 import finding
from nova_vmi.osc.v1 import policy
from nova_vmi.osc.v1 import run

UUID = 'b7e3d1c2-58a4-4f96-8e0b-c3a9f1d2e456'


def parse(command_class, argv):
    return command_class(None, None).get_parser('openstack').parse_args(argv)


def parse_error(command_class, argv, capsys):
    with pytest.raises(SystemExit):
        parse(command_class, argv)
    return capsys.readouterr().err


# policy set
def test_set_parses_every_option():
    args = parse(policy.SetPolicy, [UUID, '--probe', 'pslist', '--probe', 'idt',
                                    '--periodic', '300', '--guest-trigger',
                                    '--no-on-demand', '--consistency', 'snapshot',
                                    '--guest-trigger-rate', '0.5'])
    assert (args.probes, args.periodic, args.guest_trigger, args.on_demand,
            args.consistency, args.guest_trigger_rate) == \
        (['pslist', 'idt'], 300, True, False, 'snapshot', 0.5)


def test_set_leaves_unset_toggles_as_none():
    args = parse(policy.SetPolicy, [UUID])
    assert (args.guest_trigger, args.on_demand, args.periodic, args.no_periodic) == \
        (None, None, None, False), 'expected nothing changed when nothing is given'


@pytest.mark.parametrize('argv, complaint', [
    (['--guest-trigger', '--no-guest-trigger'], 'not allowed with'),
    (['--periodic', '5', '--no-periodic'], 'not allowed with'),
    (['--periodic', '0'], 'must be at least 1'),
    (['--periodic', 'often'], 'is not an integer'),
    (['--guest-trigger-rate', '0'], 'must be greater than 0'),
    (['--consistency', 'frozen'], 'invalid choice'),
])
def test_set_refuses_bad_options(argv, complaint, capsys):
    assert complaint in parse_error(policy.SetPolicy, [UUID] + argv, capsys)


STORED = {'probes': ['pslist'], 'triggers': {'on_demand': True, 'periodic_seconds': 60,
                                             'guest': True},
          'consistency': 'pause', 'guest_trigger_rate': 2.0,
          'created_at': '2026-11-27T07:00:00Z', 'updated_at': None}


def test_merge_changes_only_what_is_given():
    body = policy.merged_policy(STORED, parse(policy.SetPolicy, [UUID,
                                                                 '--no-guest-trigger']))
    assert body == {'probes': ['pslist'], 'consistency': 'pause',
                    'guest_trigger_rate': 2.0,
                    'triggers': {'on_demand': True, 'periodic_seconds': 60,
                                 'guest': False}}, body


def test_merge_no_periodic_clears_the_timer_and_probes_replace_the_list():
    body = policy.merged_policy(STORED, parse(policy.SetPolicy, [
        UUID, '--no-periodic', '--probe', 'idt', '--probe', 'creds']))
    assert body['triggers']['periodic_seconds'] is None
    assert body['probes'] == ['idt', 'creds']


def test_merge_without_a_policy_sends_only_what_is_given():
    body = policy.merged_policy(None, parse(policy.SetPolicy, [UUID, '--probe',
                                                               'pslist']))
    assert body == {'probes': ['pslist'], 'triggers': {}}, \
        'expected the API to apply its defaults to the rest: %s' % body


def test_merge_without_a_policy_or_probes_asks_for_a_probe():
    with pytest.raises(ValueError, match='--probe'):
        policy.merged_policy(None, parse(policy.SetPolicy, [UUID, '--periodic', '9']))


def test_flatten_shows_the_triggers_as_columns():
    flat = policy.flatten(UUID, STORED)
    assert (flat['instance_uuid'], flat['on_demand'], flat['periodic_seconds'],
            flat['guest_trigger']) == (UUID, True, 60, True), flat
    assert set(flat) == set(policy.COLUMNS)


# run
def test_run_parses_probes_and_wait():
    args = parse(run.CreateRun, [UUID, '--probe', 'pslist', '--wait', '--timeout', '5'])
    assert (args.probes, args.wait, args.timeout) == (['pslist'], True, 5.0)


def test_finding_list_refuses_an_unknown_severity(capsys):
    assert 'invalid choice' in parse_error(finding.ListFindings,
                                           ['--severity', 'urgent'], capsys)


def test_finding_list_takes_several_severities():
    args = parse(finding.ListFindings, ['--severity', 'high', '--severity', 'critical'])
    assert args.severity == ['high', 'critical']


RESULTS = [
    {'probe': 'pslist', 'error': None, 'seconds': 0.5,
     'records': [{'pid': 1, 'comm': 'init'}, {'pid': 2, 'comm': 'kthreadd',
                                              'kernel_thread': True}]},
    {'probe': 'idt', 'error': 'profile missing', 'seconds': None, 'records': []},
]


def test_results_table_has_a_heading_and_a_table_per_probe():
    text = run.ResultsColumn(RESULTS).human_readable()
    lines = text.splitlines()
    assert lines[0] == 'pslist: 2 records in 0.500000s', lines
    assert 'kernel_thread' in lines[2] and 'kthreadd' in text, text
    assert lines[-1] == 'idt: 0 records, error: profile missing', lines


def test_results_for_tools_are_the_list_itself():
    assert run.ResultsColumn(RESULTS).machine_readable() is RESULTS


def test_records_table_is_bounded(monkeypatch):
    monkeypatch.setattr(run, 'MAX_TABLE_RECORDS', 3)
    text = run.records_table([{'pid': n} for n in range(10)])
    assert text.endswith('... 7 more records (-f json or -f yaml shows them all)'), text
    assert '| 3 ' not in text, 'expected only the first 3 records in the table'


def test_records_table_cuts_long_cells():
    text = run.records_table([{'comm': 'x' * 500}])
    assert 'x' * (run.MAX_CELL - 3) + '...' in text and 'x' * run.MAX_CELL not in text


def test_findings_are_one_line_each():
    text = run.FindingsColumn([{'severity': 'high', 'probe': 'hidden_tasks',
                                'kind': 'hidden_task', 'summary': 'pid 7 hidden'}])
    assert text.human_readable() == '[high] hidden_tasks/hidden_task: pid 7 hidden'


def test_show_run_has_every_column_and_formattable_results():
    names, values = run.show_run({'id': 'r', 'status': 'done', 'results': RESULTS,
                                  'probes': ['pslist', 'idt']})
    row = dict(zip(names, values))
    assert isinstance(row['results'], run.ResultsColumn)
    assert row['probes'].machine_readable() == ['pslist', 'idt']
    assert row['error'] is None


class FakeClock:
    """Stands in for time: the waiter's clock and sleep (no real waiting in a unit test)."""

    def __init__(self):
        self.now = 0.0

    def time(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_waiter_reports_each_status_once_and_returns_the_final_run():
    statuses = iter(['pending', 'running', 'running', 'done'])
    clock, out = FakeClock(), io.StringIO()
    waiter = run.RunWaiter(lambda run_id: {'id': run_id, 'status': next(statuses),
                                           'host': 'c1'},
                           out, interval=1.0, clock=clock.time, sleep=clock.sleep)
    final = waiter.wait({'id': 'r', 'status': 'pending'})
    assert final['status'] == 'done'
    assert out.getvalue().splitlines() == [
        'run r: pending (0s)', 'run r: running on c1 (2s)', 'run r: done (4s)'], \
        out.getvalue()


def test_waiter_reminds_while_nothing_changes_and_gives_up_at_the_timeout():
    clock, out = FakeClock(), io.StringIO()
    waiter = run.RunWaiter(lambda run_id: {'id': run_id, 'status': 'running'}, out,
                           interval=5.0, timeout=25.0, clock=clock.time,
                           sleep=clock.sleep)
    with pytest.raises(exceptions.CommandError, match='still running after 25s'):
        waiter.wait({'id': 'r', 'status': 'pending'})
    assert out.getvalue().splitlines() == [
        'run r: pending (0s)', 'run r: running (5s)', 'run r: running (15s)',
        'run r: running (25s)'], out.getvalue()


# common
class FakeClientManager:
    """Stands in for osc's ClientManager: its configuration, and Nova (none runs here)."""

    def __init__(self, config, compute=None):
        self.config = config
        self._compute = compute

    def get_configuration(self):
        return self.config

    @property
    def compute(self):
        if self._compute is None:
            raise AssertionError('Nova must not be asked')
        return self._compute


class FakeApp:
    def __init__(self, config, compute=None):
        self.client_manager = FakeClientManager(config, compute)


class FailingNova:
    """Stands in for openstacksdk's compute proxy when Nova answers with an error."""

    def find_server(self, name, ignore_missing=True):
        raise RuntimeError('No Server found for %s\n(HTTP 404)' % name)


class FoundNova:
    """Stands in for openstacksdk's compute proxy that finds the server."""

    class Server:
        id = UUID

    def find_server(self, name, ignore_missing=True):
        assert ignore_missing is False, 'expected a missing server to raise'
        return self.Server()


def test_a_uuid_is_used_as_is_without_nova():
    assert common.resolve_server(FakeApp({'auth_type': 'none'}), UUID) == UUID


def test_a_name_without_authentication_asks_for_the_uuid():
    with pytest.raises(exceptions.CommandError, match="'web-1' is not a UUID"):
        common.resolve_server(FakeApp({'auth_type': 'none'}), 'web-1')


def test_a_name_is_resolved_through_nova():
    app = FakeApp({'auth_type': 'password'}, FoundNova())
    assert common.resolve_server(app, 'web-1') == UUID


def test_nova_failure_is_one_line():
    app = FakeApp({'auth_type': 'password'}, FailingNova())
    with pytest.raises(exceptions.CommandError) as raised:
        common.resolve_server(app, 'web-1')
    assert str(raised.value) == ("server 'web-1' is not a UUID and Nova could not "
                                 "resolve it: No Server found for web-1 (HTTP 404)")


def test_columns_keep_structure_for_tools_and_read_well_in_tables():
    listed = common.column(['live', 'pause'])
    assert (listed.human_readable(), listed.machine_readable()) == \
        ('live, pause', ['live', 'pause'])
    assert common.column({'pid': 1}).machine_readable() == {'pid': 1}
    assert common.column(3) == 3


def test_agent_row_follows_the_columns():
    values = common.row({'host': 'c1', 'alive': True, 'capabilities': ['live']},
                        agent.COLUMNS)
    row = dict(zip(agent.COLUMNS, values))
    assert (row['host'], row['alive'], row['driver']) == ('c1', True, None)

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

"""The database API's tests, written once and run on every backend.

:class:`DBAPICases` holds the test bodies; a subclass supplies the ``database_conf``
fixture (a ConfigOpts whose ``[database]`` is migrated to head): SQLite in
``tests/unit/db/test_api.py``, MariaDB and PostgreSQL in
``tests/functional/test_db_backends.py``.
"""

import datetime

from oslo_config import cfg
from oslo_utils import uuidutils
import pytest
import sqlalchemy as sa

from nova_vmi import context
from nova_vmi.conf import database
from nova_vmi.db import api as db_api
from nova_vmi.db import exception
from nova_vmi.db import migration
from nova_vmi.db import models
from nova_vmi.objects import notification
from tests.unit.objects import samples

UTC = datetime.timezone.utc
T0 = datetime.datetime(2026, 11, 1, 12, 0, 0, 123456, tzinfo=UTC)
PROJECT = 'c0ffee00c0ffee00c0ffee00c0ffee00'
OTHER_PROJECT = 'deadbeefdeadbeefdeadbeefdeadbeef'


def make_conf(connection):
    """A private ConfigOpts whose database is ``connection``."""
    conf = cfg.ConfigOpts()
    database.register_opts(conf)
    conf([])
    conf.set_override('connection', connection, group='database')
    if connection.startswith('sqlite'):
        # A test database need not survive a power cut: no fsync at each commit.
        conf.set_override('sqlite_synchronous', False, group='database')
    return conf


def migrated_conf(connection):
    conf = make_conf(connection)
    migration.db_sync(conf)
    return conf


def payload(event_type, **changes):
    """The sample payload of ``event_type`` with ``changes`` applied.

    A new ``run_id`` or ``instance_uuid`` is carried into the payload's findings too.
    """
    cls = notification.PAYLOADS[event_type][0]
    obj = cls.from_primitive(samples.load(event_type)['payload'])
    for name, value in changes.items():
        setattr(obj, name, value)
    for finding in obj.findings if 'findings' in obj.fields else ():
        for name in ('run_id', 'instance_uuid'):
            if name in changes:
                setattr(finding, name, changes[name])
    return obj


def finding(run_id, instance_uuid, summary, severity='high', kind='hidden_task'):
    return notification.VMIFindingPayload(
        run_id=run_id, instance_uuid=instance_uuid, host='compute-1',
        probe='hidden_tasks', kind=kind, severity=severity, summary=summary,
        evidence={'summary': summary})


def new_run(instance_uuid=None, findings=None, event_type=notification.RUN_END):
    """A run.end payload (by default with the sample's one finding) of a new run."""
    run_id = uuidutils.generate_uuid()
    instance_uuid = instance_uuid or uuidutils.generate_uuid()
    changes = {'run_id': run_id, 'instance_uuid': instance_uuid}
    if findings is not None:
        changes['findings'] = [finding(run_id, instance_uuid, summary)
                               for summary in findings]
    return payload(event_type, **changes)


def set_created_at(model, row_id, created_at):
    """Back-date a row: tests of ordering and purging need distinct, known times."""
    with db_api.get_engine().begin() as connection:
        connection.execute(sa.update(model).where(model.id == row_id)
                           .values(created_at=created_at))


def empty_tables():
    with db_api.get_engine().begin() as connection:
        for table in reversed(models.Base.metadata.sorted_tables):
            connection.execute(table.delete())


class DBAPICases:
    """The DB API's behaviour; subclasses provide ``database_conf``."""

    @pytest.fixture
    def ctx(self, database_conf):
        db_api.configure(database_conf)
        empty_tables()
        yield context.get_admin_context()
        db_api.dispose()

    # Migrations ------------------------------------------------------------------------

    def test_migrated_database_is_at_head(self, database_conf):
        assert migration.db_version(database_conf) == migration.head_revision(), (
            'db_sync() should leave the database at the newest revision')

    def test_db_sync_again_is_harmless(self, database_conf, ctx):
        db_api.run_ended(ctx, new_run())
        migration.db_sync(database_conf)
        assert len(db_api.run_list(ctx)) == 1, 'a second db_sync should keep the rows'

    # Agents and instances --------------------------------------------------------------

    def test_heartbeat_records_the_agent_and_where_its_guests_run(self, ctx):
        heartbeat = payload(notification.HEARTBEAT)
        db_api.agent_heartbeat(ctx, heartbeat)
        db_api.agent_heartbeat(ctx, heartbeat)
        agents = db_api.agent_list(ctx)
        assert [a['host'] for a in agents] == ['compute-1'], 'expected one agent row'
        assert agents[0]['capabilities'] == ['live', 'pause', 'trigger:debugcon']
        assert agents[0]['interval'] == 30 and agents[0]['driver'] == 'qemu'
        assert agents[0]['last_heartbeat'].tzinfo is not None, 'times should be aware'
        web = db_api.instance_get(ctx, heartbeat.guests[0].uuid)
        assert (web['host'], web['name'], web['triggers']) == (
            'compute-1', 'web-1', ['debugcon']), 'the heartbeat should place its guests'

    def test_heartbeat_keeps_the_project_nova_told_us(self, ctx):
        heartbeat = payload(notification.HEARTBEAT)
        uuid = heartbeat.guests[0].uuid
        db_api.instance_update(ctx, uuid, project_id=PROJECT, host='old-host')
        db_api.agent_heartbeat(ctx, heartbeat)
        instance = db_api.instance_get(ctx, uuid)
        assert instance['project_id'] == PROJECT, 'a heartbeat must not drop project_id'
        assert instance['host'] == 'compute-1', 'the heartbeat says where it runs now'

    def test_instance_update_upserts_and_none_leaves_a_value(self, ctx):
        uuid = uuidutils.generate_uuid()
        assert db_api.instance_get(ctx, uuid) is None, 'an unknown instance is None'
        db_api.instance_update(ctx, uuid, project_id=PROJECT, host='h1', name='vm')
        db_api.instance_update(ctx, uuid, host=None, name='vm2')
        instance = db_api.instance_get(ctx, uuid)
        assert (instance['project_id'], instance['host'], instance['name']) == (
            PROJECT, 'h1', 'vm2'), 'None should keep the host; name should change'

    def test_instance_update_refuses_unknown_columns(self, ctx):
        with pytest.raises(ValueError, match='status'):
            db_api.instance_update(ctx, uuidutils.generate_uuid(), status='x')

    # Policies --------------------------------------------------------------------------

    def test_policy_set_get_replace_delete(self, ctx):
        uuid = uuidutils.generate_uuid()
        assert db_api.policy_get(ctx, uuid) is None, 'no policy yet'
        body = {'probes': ['pslist'], 'on_demand': True, 'periodic_seconds': 60,
                'guest': False, 'consistency': 'pause', 'guest_trigger_rate': 1.0}
        stored = db_api.policy_set(ctx, uuid, body)
        assert {k: stored[k] for k in body} == body, 'policy_set returns the body'
        assert stored['created_at'] is not None
        db_api.policy_set(ctx, uuid, dict(body, probes=['idt']))
        got = db_api.policy_get(ctx, uuid)
        assert got['probes'] == ['idt'], 'a second policy_set replaces the body'
        assert got['updated_at'] is not None, 'a replaced policy has updated_at'
        assert db_api.policy_delete(ctx, uuid) is True
        assert db_api.policy_delete(ctx, uuid) is False, 'nothing left to delete'
        assert db_api.policy_get(ctx, uuid) is None

    # Runs ------------------------------------------------------------------------------

    def test_run_create_records_a_pending_on_demand_run(self, ctx):
        uuid = uuidutils.generate_uuid()
        run = db_api.run_create(ctx, {'instance_uuid': uuid, 'project_id': PROJECT,
                                      'host': 'compute-1', 'probes': ['pslist'],
                                      'consistency': None, 'requested_at': T0})
        assert (run['status'], run['trigger']) == ('pending', 'on_demand')
        assert uuidutils.is_uuid_like(run['id']), 'run_create gives the run an id'
        assert db_api.run_get(ctx, run['id']) == run, 'run_get returns what was created'
        assert run['results'] == [] and run['findings'] == []
        assert run['requested_at'] == T0

    def test_run_get_of_an_unknown_run_is_none(self, ctx):
        assert db_api.run_get(ctx, uuidutils.generate_uuid()) is None

    def test_run_ended_stores_timings_results_and_findings(self, ctx):
        end = payload(notification.RUN_END)
        db_api.run_ended(ctx, end)
        run = db_api.run_get(ctx, end.run_id)
        assert run['status'] == 'done'
        assert (run['triggered_at'], run['started_at'], run['ended_at']) == (
            end.triggered_at, end.started_at, end.ended_at), 'times to the microsecond'
        assert run['pause_seconds'] == pytest.approx(0.004712)
        assert [r['probe'] for r in run['results']] == ['pslist', 'hidden_tasks']
        assert run['results'][0]['records'][0]['comm'] == 'init'
        assert run['results_count'] == 2 and run['findings_count'] == 1
        [stored] = run['findings']
        assert (stored['kind'], stored['severity']) == ('hidden_task', 'high')
        assert stored['evidence']['pid'] == 1337

    def test_run_ended_twice_keeps_one_run_and_the_same_findings(self, ctx):
        end = payload(notification.RUN_END)
        db_api.run_ended(ctx, end)
        first = db_api.run_get(ctx, end.run_id)
        db_api.run_ended(ctx, end)
        second = db_api.run_get(ctx, end.run_id)
        assert len(db_api.run_list(ctx)) == 1, 'a redelivered run.end adds no run'
        assert second['findings'] == first['findings'], (
            'a redelivered run.end should keep the same finding rows (and ids)')
        assert len(db_api.finding_list(ctx)) == 1

    def test_run_ended_again_replaces_findings(self, ctx):
        end = new_run(findings=['a', 'b'])
        db_api.run_ended(ctx, end)
        kept_id = {f['summary']: f['id'] for f in db_api.run_get(ctx, end.run_id)['findings']}
        end.findings = [finding(end.run_id, end.instance_uuid, s) for s in ('b', 'c')]
        db_api.run_ended(ctx, end)
        findings = db_api.run_get(ctx, end.run_id)['findings']
        assert sorted(f['summary'] for f in findings) == ['b', 'c'], (
            "the run's findings should be the last run.end's")
        assert [f['id'] for f in findings if f['summary'] == 'b'] == [kept_id['b']], (
            'a finding in both deliveries keeps its row')

    def test_run_ended_stores_a_repeated_finding_once(self, ctx):
        end = new_run(findings=['same', 'same'])
        db_api.run_ended(ctx, end)
        assert db_api.run_get(ctx, end.run_id)['findings_count'] == 1

    def test_run_started_after_run_ended_keeps_it_done(self, ctx):
        end = payload(notification.RUN_END)
        db_api.run_ended(ctx, end)
        db_api.run_started(ctx, payload(notification.RUN_START))
        run = db_api.run_get(ctx, end.run_id)
        assert run['status'] == 'done', 'a late run.start must not move a run back'
        assert run['ended_at'] == end.ended_at and run['results_count'] == 2

    def test_run_failed_after_run_ended_changes_nothing(self, ctx):
        end = payload(notification.RUN_END)
        db_api.run_ended(ctx, end)
        before = db_api.run_get(ctx, end.run_id)
        db_api.run_failed(ctx, payload(notification.RUN_ERROR))
        assert db_api.run_get(ctx, end.run_id) == before, 'a done run stays as it was'

    def test_run_started_moves_a_pending_run_to_running(self, ctx):
        start = payload(notification.RUN_START)
        db_api.run_create(ctx, {'id': start.run_id, 'instance_uuid': start.instance_uuid,
                                'project_id': PROJECT, 'host': 'compute-1',
                                'probes': ['pslist'], 'requested_at': T0})
        db_api.run_started(ctx, start)
        db_api.run_started(ctx, start)
        run = db_api.run_get(ctx, start.run_id)
        assert (run['status'], run['started_at']) == ('running', start.started_at)
        assert (run['project_id'], run['requested_at']) == (PROJECT, T0), (
            'run.start should keep what the request recorded')

    def test_run_started_for_an_unknown_run_inserts_it_running(self, ctx):
        start = payload(notification.RUN_START)
        db_api.run_started(ctx, start)
        assert db_api.run_get(ctx, start.run_id)['status'] == 'running'

    def test_run_failed_records_the_error(self, ctx):
        error = payload(notification.RUN_ERROR)
        db_api.run_started(ctx, payload(notification.RUN_START))
        db_api.run_failed(ctx, error)
        db_api.run_failed(ctx, error)
        run = db_api.run_get(ctx, error.run_id)
        assert (run['status'], run['error_type']) == ('error', 'GuestVanished')
        assert 'vanished' in run['error']

    def test_run_of_a_known_instance_takes_its_project(self, ctx):
        end = new_run()
        db_api.instance_update(ctx, end.instance_uuid, project_id=PROJECT)
        db_api.run_ended(ctx, end)
        assert db_api.run_get(ctx, end.run_id)['project_id'] == PROJECT

    def test_run_list_filters_by_instance_and_project_and_omits_results(self, ctx):
        mine, theirs, unowned = new_run(), new_run(), new_run()
        db_api.run_ended(ctx, mine)
        db_api.run_ended(ctx, theirs)
        db_api.run_ended(ctx, unowned)
        db_api.instance_update(ctx, mine.instance_uuid, project_id=PROJECT)
        db_api.instance_update(ctx, theirs.instance_uuid, project_id=OTHER_PROJECT)
        listed = db_api.run_list(ctx, project_id=PROJECT)
        assert [r['id'] for r in listed] == [mine.run_id], (
            "a project's runs, found through its instance when the run has no project")
        assert 'results' not in listed[0], 'list items leave the results out'
        assert (listed[0]['results_count'], listed[0]['findings_count']) == (2, 1)
        by_instance = db_api.run_list(ctx, instance_uuid=theirs.instance_uuid)
        assert [r['id'] for r in by_instance] == [theirs.run_id]

    def test_run_list_pages_newest_first_with_a_marker(self, ctx):
        runs = [new_run() for _ in range(5)]
        for minute, run in enumerate(runs):
            db_api.run_ended(ctx, run)
            set_created_at(models.Run, run.run_id, T0 + datetime.timedelta(minutes=minute))
        newest_first = [run.run_id for run in reversed(runs)]
        assert [r['id'] for r in db_api.run_list(ctx)] == newest_first
        pages, marker = [], None
        while True:
            page = db_api.run_list(ctx, limit=2, marker=marker)
            if not page:
                break
            pages.append([r['id'] for r in page])
            marker = page[-1]['id']
        assert pages == [newest_first[0:2], newest_first[2:4], newest_first[4:]], (
            'pages of two should walk the list in order')

    def test_run_list_orders_runs_of_the_same_time_by_id(self, ctx):
        runs = [new_run() for _ in range(3)]
        for run in runs:
            db_api.run_ended(ctx, run)
            set_created_at(models.Run, run.run_id, T0)
        first = db_api.run_list(ctx, limit=1)
        rest = db_api.run_list(ctx, marker=first[0]['id'])
        ids = [r['id'] for r in first + rest]
        assert ids == sorted((run.run_id for run in runs), reverse=True), (
            'a tie on created_at is broken by id, descending, without loss')

    def test_run_list_with_an_unknown_marker_raises_marker_not_found(self, ctx):
        db_api.run_ended(ctx, new_run())
        with pytest.raises(exception.MarkerNotFound):
            db_api.run_list(ctx, marker=uuidutils.generate_uuid())

    def test_run_list_marker_outside_the_filter_is_not_found(self, ctx):
        other = new_run()
        db_api.run_ended(ctx, other)
        with pytest.raises(exception.MarkerNotFound):
            db_api.run_list(ctx, instance_uuid=uuidutils.generate_uuid(),
                            marker=other.run_id)

    def test_large_results_round_trip(self, ctx):
        end = new_run()
        records = [{'comm': 'x' * 1000, 'pid': pid} for pid in range(300)]
        end.results[0].records = records
        db_api.run_ended(ctx, end)
        assert db_api.run_get(ctx, end.run_id)['results'][0]['records'] == records, (
            'results beyond 64 KiB (MySQL TEXT) should come back whole')

    def test_overlong_strings_are_stored_shortened(self, ctx):
        end = new_run()
        end.trigger_detail = 'd' * 1000
        db_api.run_ended(ctx, end)
        assert db_api.run_get(ctx, end.run_id)['trigger_detail'] == 'd' * 255

    # Findings --------------------------------------------------------------------------

    def test_finding_list_filters(self, ctx):
        mine = new_run(findings=['m-high'])
        theirs = new_run(findings=['t-high'])
        theirs.findings.append(finding(theirs.run_id, theirs.instance_uuid, 't-low',
                                       severity='low'))
        db_api.instance_update(ctx, mine.instance_uuid, project_id=PROJECT)
        db_api.instance_update(ctx, theirs.instance_uuid, project_id=OTHER_PROJECT)
        db_api.run_ended(ctx, mine)
        db_api.run_ended(ctx, theirs)

        def summaries(**filters):
            return sorted(f['summary'] for f in db_api.finding_list(ctx, **filters))

        assert summaries(project_id=PROJECT) == ['m-high']
        assert summaries(instance_uuid=theirs.instance_uuid) == ['t-high', 't-low']
        assert summaries(severity='low') == ['t-low']
        assert summaries(severity=['low', 'high']) == ['m-high', 't-high', 't-low']
        [old] = db_api.finding_list(ctx, instance_uuid=mine.instance_uuid)
        set_created_at(models.Finding, old['id'], T0)
        since = T0 + datetime.timedelta(seconds=1)
        assert summaries(since=since) == ['t-high', 't-low'], (
            'since should leave out findings stored before it')

    def test_finding_list_pages_with_a_marker(self, ctx):
        end = new_run(findings=['f%d' % i for i in range(5)])
        db_api.run_ended(ctx, end)
        all_ids = [f['id'] for f in db_api.finding_list(ctx)]
        first = db_api.finding_list(ctx, limit=3)
        rest = db_api.finding_list(ctx, limit=3, marker=str(first[-1]['id']))
        assert [f['id'] for f in first + rest] == all_ids, (
            'a marker (given as text, as from a query string) continues the list')
        assert len(all_ids) == 5
        with pytest.raises(exception.MarkerNotFound):
            db_api.finding_list(ctx, marker=max(all_ids) + 1000)
        with pytest.raises(exception.MarkerNotFound):
            db_api.finding_list(ctx, marker='not-a-number')

    # Purge -----------------------------------------------------------------------------

    def test_run_purge_deletes_old_runs_and_their_findings(self, ctx):
        old, recent = new_run(findings=['old']), new_run(findings=['new'])
        db_api.run_ended(ctx, old)
        db_api.run_ended(ctx, recent)
        set_created_at(models.Run, old.run_id, T0)
        assert db_api.run_purge(ctx, T0 + datetime.timedelta(days=1)) == 1
        assert db_api.run_get(ctx, old.run_id) is None, 'the old run should be gone'
        assert [f['summary'] for f in db_api.finding_list(ctx)] == ['new'], (
            "the old run's findings should go with it")
        assert db_api.run_get(ctx, recent.run_id) is not None

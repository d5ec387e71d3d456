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

"""The control plane's queries: what the REST API and the listener ask of the database.

Every function takes the caller's :class:`nova_vmi.context.RequestContext` first and runs
in an oslo.db enginefacade transaction; values go in and come out as plain dicts, times
as aware UTC datetimes.  The listener's writes (``run_*``, ``agent_heartbeat``) are
idempotent: a redelivered notification leaves the tables as the first delivery did.
"""

import hashlib

from oslo_db import api as oslo_db_api
from oslo_db import exception as db_exc
from oslo_db.sqlalchemy import enginefacade
from oslo_db.sqlalchemy import exc_filters
from oslo_utils import uuidutils
import sqlalchemy as sa
from sqlalchemy import orm

from nova_vmi.db import exception
from nova_vmi.db import models

_CONTEXT = enginefacade.transaction_context()

_RUN_CREATE_KEYS = ('id', 'instance_uuid', 'project_id', 'host', 'probes', 'trigger',
                    'trigger_detail', 'consistency', 'requested_at')
_INSTANCE_KEYS = ('project_id', 'host', 'name')
_RUN_COLUMNS = tuple(c.name for c in models.Run.__table__.columns if c.name != 'results')
_FINDING_COLUMNS = tuple(c.name for c in models.Finding.__table__.columns
                         if c.name != 'summary_sha256')
_AGENT_COLUMNS = ('host', 'driver', 'capabilities', 'version', 'interval',
                  'last_heartbeat', 'created_at', 'updated_at')


def db_options(conf):
    """The ``[database]`` options of ``conf`` as enginefacade's configure() takes them."""
    return dict(conf.database.items())


def configure(conf):
    """Point this module at ``conf``'s database; a later call replaces an earlier one."""
    manager = enginefacade.transaction_context()
    manager.configure(**db_options(conf))
    _CONTEXT.dispose_pool()
    _CONTEXT.patch_factory(manager)


def get_engine():
    """The engine that writers use (created on first use)."""
    return _CONTEXT.writer.get_engine()


def dispose():
    """Close the pooled connections (before a test drops its database, or at exit)."""
    _CONTEXT.dispose_pool()


def _is_duplicate(exc):
    return isinstance(exc, db_exc.DBDuplicateEntry)


#: Upserts race with a concurrent listener's insert of the same key: the loser's whole
#: transaction runs again and then finds the row.  Deadlocks are retried as well.
_retry_upsert = oslo_db_api.wrap_db_retry(max_retries=5, retry_interval=0.1,
                                          retry_on_deadlock=True,
                                          exception_checker=_is_duplicate)


@exc_filters.filters('postgresql', sa.exc.OperationalError,
                     r'.*connection to server .* failed')
def _postgresql_connection_failed(error, match, engine_name, is_disconnect):
    """A PostgreSQL server that refuses or cannot be reached: DBConnectionError.

    oslo.db knows libpq's older wording ("could not connect to server") only; libpq 14
    and later say "connection to server at ... failed", which oslo.db let through as a
    plain OperationalError, so that the listener did not requeue and oslo.db's own
    connect retries did not happen.
    """
    raise db_exc.DBConnectionError(error)


def _fit(model, values):
    """``values`` with strings cut to their column's length (strict MySQL refuses more).

    An agent's strings are bounded, but one too long must not make a notification fail
    for ever: it is stored shortened.
    """
    columns = model.__table__.columns
    fitted = {}
    for key, value in values.items():
        length = getattr(columns[key].type, 'length', None)
        if isinstance(value, str) and length and len(value) > length:
            value = value[:length]
        fitted[key] = value
    return fitted


def _set(row, values):
    for key, value in values.items():
        setattr(row, key, value)


def _fields(obj):
    """A versioned object's set fields as a dict."""
    return {name: getattr(obj, name) for name in obj.fields if obj.obj_attr_is_set(name)}


# Agents and instances ----------------------------------------------------------------

def _agent_dict(agent):
    return {name: getattr(agent, name) for name in _AGENT_COLUMNS}


def _instance_dict(instance):
    return {'uuid': instance.uuid, 'project_id': instance.project_id,
            'host': instance.host, 'name': instance.name,
            'triggers': instance.triggers or [], 'updated_at': instance.updated_at}


def _upsert_instance(session, uuid, values):
    instance = session.get(models.Instance, uuid)
    values = _fit(models.Instance, values)
    if instance is None:
        instance = models.Instance(uuid=uuid, **values)
        session.add(instance)
    else:
        _set(instance, values)
    return instance


@_retry_upsert
@_CONTEXT.writer
def agent_heartbeat(context, heartbeat):
    """Record a VMIHeartbeatPayload: the agent's row, and where its guests run."""
    session = context.session
    values = _fit(models.Agent, {
        'driver': heartbeat.driver, 'capabilities': list(heartbeat.capabilities),
        'version': heartbeat.version, 'interval': heartbeat.interval,
        'last_heartbeat': models.utcnow()})
    agent = session.get(models.Agent, heartbeat.host)
    if agent is None:
        session.add(models.Agent(host=heartbeat.host, **values))
    else:
        _set(agent, values)
    for guest in heartbeat.guests:
        _upsert_instance(session, guest.uuid, {
            'host': heartbeat.host, 'name': guest.name, 'triggers': list(guest.triggers)})


@_CONTEXT.reader
def agent_list(context):
    """Every agent, by host."""
    agents = context.session.scalars(sa.select(models.Agent).order_by(models.Agent.host))
    return [_agent_dict(agent) for agent in agents]


@_CONTEXT.reader
def instance_get(context, uuid):
    """What is known of instance ``uuid``, or None."""
    instance = context.session.get(models.Instance, uuid)
    return None if instance is None else _instance_dict(instance)


@_retry_upsert
@_CONTEXT.writer
def instance_update(context, uuid, **values):
    """Create or update instance ``uuid``'s project_id, host and name.

    A value of None leaves that column as it is (Nova may hide the host from a caller).
    """
    unknown = sorted(set(values) - set(_INSTANCE_KEYS))
    if unknown:
        raise ValueError('instance_update: unknown column(s) %s' % ', '.join(unknown))
    values = {key: value for key, value in values.items() if value is not None}
    return _instance_dict(_upsert_instance(context.session, uuid, values))


# Policies ------------------------------------------------------------------------------

def _policy_dict(policy):
    return dict(policy.body, created_at=policy.created_at, updated_at=policy.updated_at)


@_CONTEXT.reader
def policy_get(context, uuid):
    """Instance ``uuid``'s policy (VMIPolicy fields, created_at, updated_at), or None."""
    policy = context.session.get(models.Policy, uuid)
    return None if policy is None else _policy_dict(policy)


@_retry_upsert
@_CONTEXT.writer
def policy_set(context, uuid, body):
    """Create or replace instance ``uuid``'s policy: ``body`` a dict (or a VMIPolicy)."""
    if not isinstance(body, dict):
        body = _fields(body)
    session = context.session
    policy = session.get(models.Policy, uuid)
    if policy is None:
        policy = models.Policy(instance_uuid=uuid, body=dict(body))
        session.add(policy)
    else:
        policy.body = dict(body)
    session.flush()
    return _policy_dict(policy)


@_CONTEXT.writer
def policy_delete(context, uuid):
    """Delete instance ``uuid``'s policy; False when it had none."""
    result = context.session.execute(
        sa.delete(models.Policy).where(models.Policy.instance_uuid == uuid))
    return result.rowcount > 0


# Runs ----------------------------------------------------------------------------------

def _finding_dict(finding):
    return {name: getattr(finding, name) for name in _FINDING_COLUMNS}


def _run_dict(run, findings_count):
    out = {name: getattr(run, name) for name in _RUN_COLUMNS}
    out['findings_count'] = findings_count
    return out


def _full_run_dict(session, run):
    findings = session.scalars(sa.select(models.Finding)
                               .where(models.Finding.run_id == run.id)
                               .order_by(models.Finding.id)).all()
    out = _run_dict(run, len(findings))
    out['results'] = run.results or []
    out['findings'] = [_finding_dict(finding) for finding in findings]
    return out


def _project_of(session, instance_uuid):
    return session.scalar(sa.select(models.Instance.project_id)
                          .where(models.Instance.uuid == instance_uuid))


def _owner_project():
    """A run's project: its own, else its instance's (runs the agent started have none)."""
    return sa.func.coalesce(models.Run.project_id, models.Instance.project_id)


@_CONTEXT.writer
def run_create(context, values):
    """Record a requested run (status pending); returns it as run_get() would."""
    unknown = sorted(set(values) - set(_RUN_CREATE_KEYS))
    if unknown:
        raise ValueError('run_create: unknown column(s) %s' % ', '.join(unknown))
    values = dict(values)
    values.setdefault('id', uuidutils.generate_uuid())
    values.setdefault('trigger', 'on_demand')
    values.setdefault('requested_at', models.utcnow())
    values['probes'] = list(values.get('probes') or [])
    run = models.Run(status='pending', **values)
    session = context.session
    session.add(run)
    session.flush()
    return _full_run_dict(session, run)


@_CONTEXT.reader
def run_get(context, run_id):
    """Run ``run_id`` with its results and findings, or None."""
    run = context.session.get(models.Run, run_id)
    return None if run is None else _full_run_dict(context.session, run)


def _findings_count():
    return (sa.select(sa.func.count(models.Finding.id))
            .where(models.Finding.run_id == models.Run.id)
            .correlate(models.Run).scalar_subquery())


@_CONTEXT.reader
def run_list(context, instance_uuid=None, project_id=None, limit=None, marker=None):
    """Runs, newest first, without their results (findings_count and results_count tell).

    ``marker`` is the id of the last run of the previous page: MarkerNotFound when no run
    with these filters has it.
    """
    filters = []
    if instance_uuid is not None:
        filters.append(models.Run.instance_uuid == instance_uuid)
    if project_id is not None:
        filters.append(_owner_project() == project_id)

    def select(*columns):
        return (sa.select(*columns)
                .outerjoin(models.Instance, models.Instance.uuid == models.Run.instance_uuid)
                .where(*filters))

    session = context.session
    query = (select(models.Run, _findings_count())
             .options(orm.defer(models.Run.results))
             .order_by(models.Run.created_at.desc(), models.Run.id.desc()))
    if marker is not None:
        last = session.execute(select(models.Run.created_at, models.Run.id)
                               .where(models.Run.id == marker)).first()
        if last is None:
            raise exception.MarkerNotFound(marker)
        query = query.where(_after(models.Run, last.created_at, last.id))
    if limit is not None:
        query = query.limit(limit)
    return [_run_dict(run, count) for run, count in session.execute(query)]


def _after(model, created_at, row_id):
    """Rows after (created_at, id) in newest-first order."""
    return sa.or_(model.created_at < created_at,
                  sa.and_(model.created_at == created_at, model.id < row_id))


def _locked_run(session, run_id):
    return session.scalar(sa.select(models.Run).where(models.Run.id == run_id)
                          .with_for_update())


def _reported_values(payload):
    """The columns a run's notification sets, whatever its kind."""
    return _fit(models.Run, {
        'host': payload.host, 'trigger': payload.trigger,
        'trigger_detail': payload.trigger_detail, 'probes': list(payload.probes),
        'consistency': payload.consistency, 'coalesced': payload.coalesced,
        'kernel_release': payload.kernel_release, 'triggered_at': payload.triggered_at,
        'started_at': payload.started_at, 'ended_at': payload.ended_at,
        'pause_seconds': payload.pause_seconds})


def _insert_run(session, payload, values):
    run = models.Run(id=payload.run_id, instance_uuid=payload.instance_uuid,
                     project_id=_project_of(session, payload.instance_uuid), **values)
    session.add(run)
    session.flush()
    return run


def _finding_values(run, finding):
    summary = finding.summary
    return _fit(models.Finding, {
        'run_id': run.id, 'instance_uuid': run.instance_uuid, 'host': finding.host,
        'probe': finding.probe, 'kind': finding.kind, 'severity': finding.severity,
        'summary': summary, 'evidence': finding.evidence,
        'summary_sha256': hashlib.sha256(summary.encode('utf-8')).hexdigest()})


def _replace_findings(session, run, findings):
    """Make the run's findings exactly ``findings``, keeping rows that stay (and their ids)."""
    wanted = {}
    for finding in findings:
        values = _finding_values(run, finding)
        wanted[(values['probe'], values['kind'], values['summary_sha256'])] = values
    existing = session.scalars(sa.select(models.Finding)
                               .where(models.Finding.run_id == run.id))
    for row in existing:
        values = wanted.pop((row.probe, row.kind, row.summary_sha256), None)
        if values is None:
            session.delete(row)
        else:
            _set(row, values)
    session.add_all(models.Finding(**values) for values in wanted.values())


def _record_outcome(session, payload, values):
    """Store a finished run (done or error): its columns, results and findings."""
    results = [_fields(result) for result in payload.results]
    values = dict(values, results=results, results_count=len(results))
    run = _locked_run(session, payload.run_id)
    if run is None:
        run = _insert_run(session, payload, values)
    elif values['status'] == 'error' and run.status == 'done':
        return
    else:
        _set(run, values)
    _replace_findings(session, run, payload.findings)


@_retry_upsert
@_CONTEXT.writer
def run_started(context, payload):
    """Record a vmi.run.start (a VMIRunPayload): the run is running, unless it is past that."""
    session = context.session
    values = dict(_reported_values(payload), status='running')
    run = _locked_run(session, payload.run_id)
    if run is None:
        _insert_run(session, payload, values)
    elif run.status == 'pending':
        _set(run, values)


@_retry_upsert
@_CONTEXT.writer
def run_ended(context, payload):
    """Record a vmi.run.end (a VMIRunPayload): status done, results, and its findings."""
    values = dict(_reported_values(payload), status='done', error=None, error_type=None)
    _record_outcome(context.session, payload, values)


@_retry_upsert
@_CONTEXT.writer
def run_failed(context, payload):
    """Record a vmi.run.error (a VMIRunErrorPayload), unless the run is already done."""
    values = dict(_reported_values(payload), status='error',
                  **_fit(models.Run, {'error': payload.error, 'error_type': payload.error_type}))
    _record_outcome(context.session, payload, values)


# Findings ------------------------------------------------------------------------------

@_CONTEXT.reader
def finding_list(context, instance_uuid=None, project_id=None, severity=None, since=None,
                 limit=None, marker=None):
    """Findings, newest first.

    ``severity`` is one severity or a list of them; ``since`` an aware datetime (stored at
    or after it); ``marker`` the id of the last finding of the previous page.
    """
    finding = models.Finding
    filters = []
    if instance_uuid is not None:
        filters.append(finding.instance_uuid == instance_uuid)
    if project_id is not None:
        filters.append(_owner_project() == project_id)
    if severity is not None:
        severities = [severity] if isinstance(severity, str) else list(severity)
        filters.append(finding.severity.in_(severities))
    if since is not None:
        filters.append(finding.created_at >= since)

    def select(*columns):
        return (sa.select(*columns)
                .join(models.Run, models.Run.id == finding.run_id)
                .outerjoin(models.Instance, models.Instance.uuid == finding.instance_uuid)
                .where(*filters))

    session = context.session
    query = select(finding).order_by(finding.created_at.desc(), finding.id.desc())
    if marker is not None:
        try:
            marker_id = int(marker)
        except (TypeError, ValueError):
            raise exception.MarkerNotFound(marker) from None
        last = session.execute(select(finding.created_at, finding.id)
                               .where(finding.id == marker_id)).first()
        if last is None:
            raise exception.MarkerNotFound(marker)
        query = query.where(_after(finding, last.created_at, last.id))
    if limit is not None:
        query = query.limit(limit)
    return [_finding_dict(row) for row in session.scalars(query)]


# Purge ---------------------------------------------------------------------------------

@_CONTEXT.writer
def run_purge(context, before):
    """Delete the runs created before ``before`` (an aware datetime) and their findings.

    Returns how many runs were deleted.
    """
    session = context.session
    old_runs = sa.select(models.Run.id).where(models.Run.created_at < before)
    session.execute(sa.delete(models.Finding).where(models.Finding.run_id.in_(old_runs))
                    .execution_options(synchronize_session=False))
    result = session.execute(sa.delete(models.Run).where(models.Run.created_at < before)
                             .execution_options(synchronize_session=False))
    return result.rowcount

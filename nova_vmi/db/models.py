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

"""The tables of the control plane: agents, the instances they see, policies, runs, findings.

Migrations under ``migrations/versions`` create the same tables; a unit test checks that
the two agree.  Times are UTC (:class:`~nova_vmi.db.types.UTCDateTime`); JSON columns
hold plain lists and dicts.
"""

import datetime

import sqlalchemy as sa
from sqlalchemy import orm

from nova_vmi.db import types

RUN_STATUSES = ('pending', 'running', 'done', 'error')

#: Constraint and index names, so that every backend gets the same ones.
NAMING_CONVENTION = {
    'ix': 'ix_%(table_name)s_%(column_0_N_name)s',
    'uq': 'uq_%(table_name)s_%(column_0_N_name)s',
    'ck': 'ck_%(table_name)s_%(constraint_name)s',
    'fk': 'fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s',
    'pk': 'pk_%(table_name)s',
}


def utcnow():
    """Now, as an aware UTC datetime."""
    return datetime.datetime.now(datetime.timezone.utc)


class Base(orm.DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class Agent(Base):
    """A vmi-agent, as its last heartbeat described it."""

    __tablename__ = 'agents'

    host = sa.Column(sa.String(255), primary_key=True)
    driver = sa.Column(sa.String(64), nullable=False)
    capabilities = sa.Column(types.JSONText(), nullable=False)
    version = sa.Column(sa.String(64), nullable=False)
    interval = sa.Column(sa.Integer, nullable=False)
    last_heartbeat = sa.Column(types.UTCDateTime(), nullable=False)
    created_at = sa.Column(types.UTCDateTime(), nullable=False, default=utcnow)
    updated_at = sa.Column(types.UTCDateTime(), nullable=True, onupdate=utcnow)


class Instance(Base):
    """A guest: where it runs (from heartbeats) and whose it is (from Nova)."""

    __tablename__ = 'instances'

    uuid = sa.Column(sa.String(36), primary_key=True)
    project_id = sa.Column(sa.String(255), nullable=True)
    host = sa.Column(sa.String(255), nullable=True)
    name = sa.Column(sa.String(255), nullable=True)
    triggers = sa.Column(types.JSONText(), nullable=True)
    updated_at = sa.Column(types.UTCDateTime(), nullable=True, default=utcnow,
                           onupdate=utcnow)


class Policy(Base):
    """An instance's introspection policy: the fields of a VMIPolicy, as JSON."""

    __tablename__ = 'policies'

    instance_uuid = sa.Column(sa.String(36), primary_key=True)
    body = sa.Column(types.JSONText(), nullable=False)
    created_at = sa.Column(types.UTCDateTime(), nullable=False, default=utcnow)
    updated_at = sa.Column(types.UTCDateTime(), nullable=True, onupdate=utcnow)


class Run(Base):
    """One introspection run: requested here or triggered on the host, then reported."""

    __tablename__ = 'runs'
    __table_args__ = (
        sa.Index('ix_runs_created_at_id', 'created_at', 'id'),
    )

    id = sa.Column(sa.String(36), primary_key=True)
    instance_uuid = sa.Column(sa.String(36), nullable=False, index=True)
    project_id = sa.Column(sa.String(255), nullable=True, index=True)
    host = sa.Column(sa.String(255), nullable=True)
    status = sa.Column(sa.Enum(*RUN_STATUSES, name='status', native_enum=False,
                               create_constraint=True, length=16),
                       nullable=False)
    trigger = sa.Column(sa.String(16), nullable=False)
    trigger_detail = sa.Column(sa.String(255), nullable=True)
    probes = sa.Column(types.JSONText(), nullable=False)
    consistency = sa.Column(sa.String(16), nullable=True)
    coalesced = sa.Column(sa.Integer, nullable=False, default=0)
    kernel_release = sa.Column(sa.String(255), nullable=True)
    requested_at = sa.Column(types.UTCDateTime(), nullable=True)
    triggered_at = sa.Column(types.UTCDateTime(), nullable=True)
    started_at = sa.Column(types.UTCDateTime(), nullable=True)
    ended_at = sa.Column(types.UTCDateTime(), nullable=True)
    pause_seconds = sa.Column(sa.Float, nullable=True)
    error = sa.Column(sa.Text, nullable=True)
    error_type = sa.Column(sa.String(255), nullable=True)
    results = sa.Column(types.JSONText(), nullable=True)
    results_count = sa.Column(sa.Integer, nullable=False, default=0)
    created_at = sa.Column(types.UTCDateTime(), nullable=False, default=utcnow)
    updated_at = sa.Column(types.UTCDateTime(), nullable=True, onupdate=utcnow)


class Finding(Base):
    """Something a probe found wrong in a run.

    Unique on (run, probe, kind, summary): a summary can be long, so the constraint is
    on its SHA-256 (an index on a long text fails on PostgreSQL and needs a prefix on
    MySQL).
    """

    __tablename__ = 'findings'
    __table_args__ = (
        sa.UniqueConstraint('run_id', 'probe', 'kind', 'summary_sha256'),
        sa.Index('ix_findings_created_at_id', 'created_at', 'id'),
    )

    id = sa.Column(sa.Integer, primary_key=True, autoincrement=True)
    run_id = sa.Column(sa.String(36), sa.ForeignKey('runs.id', ondelete='CASCADE'),
                       nullable=False, index=True)
    instance_uuid = sa.Column(sa.String(36), nullable=False, index=True)
    host = sa.Column(sa.String(255), nullable=False)
    probe = sa.Column(sa.String(64), nullable=False)
    kind = sa.Column(sa.String(64), nullable=False)
    severity = sa.Column(sa.String(16), nullable=False, index=True)
    summary = sa.Column(sa.Text, nullable=False)
    summary_sha256 = sa.Column(sa.String(64), nullable=False)
    evidence = sa.Column(types.JSONText(), nullable=True)
    created_at = sa.Column(types.UTCDateTime(), nullable=False, default=utcnow)

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

"""The initial tables: agents, instances, policies, runs, findings.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from alembic import op
import sqlalchemy as sa

from nova_vmi.db import types

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

RUN_STATUSES = ('pending', 'running', 'done', 'error')


def upgrade():
    op.create_table(
        'agents',
        sa.Column('host', sa.String(255), nullable=False),
        sa.Column('driver', sa.String(64), nullable=False),
        sa.Column('capabilities', types.JSONText(), nullable=False),
        sa.Column('version', sa.String(64), nullable=False),
        sa.Column('interval', sa.Integer(), nullable=False),
        sa.Column('last_heartbeat', types.UTCDateTime(), nullable=False),
        sa.Column('created_at', types.UTCDateTime(), nullable=False),
        sa.Column('updated_at', types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('host', name='pk_agents'),
    )
    op.create_table(
        'instances',
        sa.Column('uuid', sa.String(36), nullable=False),
        sa.Column('project_id', sa.String(255), nullable=True),
        sa.Column('host', sa.String(255), nullable=True),
        sa.Column('name', sa.String(255), nullable=True),
        sa.Column('triggers', types.JSONText(), nullable=True),
        sa.Column('updated_at', types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('uuid', name='pk_instances'),
    )
    op.create_table(
        'policies',
        sa.Column('instance_uuid', sa.String(36), nullable=False),
        sa.Column('body', types.JSONText(), nullable=False),
        sa.Column('created_at', types.UTCDateTime(), nullable=False),
        sa.Column('updated_at', types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('instance_uuid', name='pk_policies'),
    )
    op.create_table(
        'runs',
        sa.Column('id', sa.String(36), nullable=False),
        sa.Column('instance_uuid', sa.String(36), nullable=False),
        sa.Column('project_id', sa.String(255), nullable=True),
        sa.Column('host', sa.String(255), nullable=True),
        sa.Column('status', sa.Enum(*RUN_STATUSES, name='status', native_enum=False,
                                    create_constraint=True, length=16),
                  nullable=False),
        sa.Column('trigger', sa.String(16), nullable=False),
        sa.Column('trigger_detail', sa.String(255), nullable=True),
        sa.Column('probes', types.JSONText(), nullable=False),
        sa.Column('consistency', sa.String(16), nullable=True),
        sa.Column('coalesced', sa.Integer(), nullable=False),
        sa.Column('kernel_release', sa.String(255), nullable=True),
        sa.Column('requested_at', types.UTCDateTime(), nullable=True),
        sa.Column('triggered_at', types.UTCDateTime(), nullable=True),
        sa.Column('started_at', types.UTCDateTime(), nullable=True),
        sa.Column('ended_at', types.UTCDateTime(), nullable=True),
        sa.Column('pause_seconds', sa.Float(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('error_type', sa.String(255), nullable=True),
        sa.Column('results', types.JSONText(), nullable=True),
        sa.Column('results_count', sa.Integer(), nullable=False),
        sa.Column('created_at', types.UTCDateTime(), nullable=False),
        sa.Column('updated_at', types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id', name='pk_runs'),
    )
    op.create_index('ix_runs_instance_uuid', 'runs', ['instance_uuid'])
    op.create_index('ix_runs_project_id', 'runs', ['project_id'])
    op.create_index('ix_runs_created_at_id', 'runs', ['created_at', 'id'])
    op.create_table(
        'findings',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('run_id', sa.String(36), nullable=False),
        sa.Column('instance_uuid', sa.String(36), nullable=False),
        sa.Column('host', sa.String(255), nullable=False),
        sa.Column('probe', sa.String(64), nullable=False),
        sa.Column('kind', sa.String(64), nullable=False),
        sa.Column('severity', sa.String(16), nullable=False),
        sa.Column('summary', sa.Text(), nullable=False),
        sa.Column('summary_sha256', sa.String(64), nullable=False),
        sa.Column('evidence', types.JSONText(), nullable=True),
        sa.Column('created_at', types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name='pk_findings'),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name='fk_findings_run_id_runs',
                                ondelete='CASCADE'),
        sa.UniqueConstraint('run_id', 'probe', 'kind', 'summary_sha256',
                            name='uq_findings_run_id_probe_kind_summary_sha256'),
    )
    op.create_index('ix_findings_run_id', 'findings', ['run_id'])
    op.create_index('ix_findings_instance_uuid', 'findings', ['instance_uuid'])
    op.create_index('ix_findings_severity', 'findings', ['severity'])
    op.create_index('ix_findings_created_at_id', 'findings', ['created_at', 'id'])

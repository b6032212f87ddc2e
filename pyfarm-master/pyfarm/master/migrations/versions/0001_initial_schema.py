"""Initial schema, with the built-in ``command`` job type.

Revision ID: 0001
Revises: 
Create Date: 2026-11-25
"""

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

COMMAND_PARAMETERS = {
    "type": "object",
    "properties": {
        "argv": {
            "type": "array", "minItems": 1, "items": {"type": "string"},
            "description": "The program and its arguments.",
        },
        "cwd": {
            "type": "string",
            "description": "The folder the program runs in.",
        },
    },
    "required": ["argv"],
    "additionalProperties": False,
}


def upgrade():
    """Apply this revision."""

    op.create_table('jobqueues',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('weight', sa.Integer(), nullable=False),
    sa.Column('minimum_agents', sa.Integer(), nullable=True),
    sa.Column('maximum_agents', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['jobqueues.id'], name=op.f('fk_jobqueues_parent_id_jobqueues'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobqueues')),
    sa.UniqueConstraint('name', name=op.f('uq_jobqueues_name'))
    )
    op.create_table('jobtypes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobtypes')),
    sa.UniqueConstraint('name', name=op.f('uq_jobtypes_name'))
    )
    op.create_table('software',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_software')),
    sa.UniqueConstraint('name', name=op.f('uq_software_name'))
    )
    op.create_table('tags',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tags')),
    sa.UniqueConstraint('name', name=op.f('uq_tags_name'))
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('email', sa.String(length=255), nullable=True),
    sa.Column('password_hash', sa.String(length=255), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('name', name=op.f('uq_users_name'))
    )
    op.create_table('agents',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('hostname', sa.String(length=255), nullable=False),
    sa.Column('os', sa.String(length=16), nullable=False),
    sa.Column('os_version', sa.String(length=255), nullable=False),
    sa.Column('cpus', sa.Integer(), nullable=False),
    sa.Column('ram', sa.Integer(), nullable=False),
    sa.Column('free_ram', sa.Integer(), nullable=False),
    sa.Column('gpus', sa.JSON(), nullable=False),
    sa.Column('disks', sa.JSON(), nullable=False),
    sa.Column('version', sa.String(length=32), nullable=False),
    sa.Column('remote_addr', sa.String(length=64), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('registered_at', sa.DateTime(), nullable=False),
    sa.Column('last_heard_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_agents_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agents'))
    )
    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_agents_hostname'), ['hostname'], unique=False)
        batch_op.create_index(batch_op.f('ix_agents_state'), ['state'], unique=False)

    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('last_used_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_api_tokens_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash'))
    )
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_tokens_user_id'), ['user_id'], unique=False)

    op.create_table('jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=255), nullable=False),
    sa.Column('jobtype_id', sa.Integer(), nullable=False),
    sa.Column('jobtype_version', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('start', sa.Integer(), nullable=False),
    sa.Column('end', sa.Integer(), nullable=False),
    sa.Column('by', sa.Integer(), nullable=False),
    sa.Column('batch', sa.Integer(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('weight', sa.Integer(), nullable=False),
    sa.Column('minimum_agents', sa.Integer(), nullable=True),
    sa.Column('maximum_agents', sa.Integer(), nullable=True),
    sa.Column('requeue', sa.Integer(), nullable=False),
    sa.Column('cpus', sa.Integer(), nullable=False),
    sa.Column('ram', sa.Integer(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('environ', sa.JSON(), nullable=False),
    sa.Column('notes', sa.Text(), nullable=False),
    sa.Column('jobqueue_id', sa.Integer(), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['jobqueue_id'], ['jobqueues.id'], name=op.f('fk_jobs_jobqueue_id_jobqueues'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['jobtype_id'], ['jobtypes.id'], name=op.f('fk_jobs_jobtype_id_jobtypes'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_jobs_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs'))
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_jobs_jobqueue_id'), ['jobqueue_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_jobs_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_jobs_user_id'), ['user_id'], unique=False)

    op.create_table('software_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('software_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['software_id'], ['software.id'], name=op.f('fk_software_versions_software_id_software'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_software_versions')),
    sa.UniqueConstraint('software_id', 'version', name='uq_software_versions_version')
    )
    op.create_table('agent_job_failures',
    sa.Column('agent_id', sa.String(length=36), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('last_failed_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_agent_job_failures_agent_id_agents'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_agent_job_failures_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('agent_id', 'job_id', name=op.f('pk_agent_job_failures'))
    )
    with op.batch_alter_table('agent_job_failures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_agent_job_failures_job_id'), ['job_id'], unique=False)

    op.create_table('agent_software',
    sa.Column('agent_id', sa.String(length=36), nullable=False),
    sa.Column('software_version_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_agent_software_agent_id_agents'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['software_version_id'], ['software_versions.id'], name=op.f('fk_agent_software_software_version_id_software_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('agent_id', 'software_version_id', name=op.f('pk_agent_software'))
    )
    op.create_table('agent_tags',
    sa.Column('agent_id', sa.String(length=36), nullable=False),
    sa.Column('tag_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_agent_tags_agent_id_agents'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tag_id'], ['tags.id'], name=op.f('fk_agent_tags_tag_id_tags'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('agent_id', 'tag_id', name=op.f('pk_agent_tags'))
    )
    op.create_table('job_dependencies',
    sa.Column('parent_id', sa.Integer(), nullable=False),
    sa.Column('child_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['child_id'], ['jobs.id'], name=op.f('fk_job_dependencies_child_id_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['parent_id'], ['jobs.id'], name=op.f('fk_job_dependencies_parent_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('parent_id', 'child_id', name=op.f('pk_job_dependencies'))
    )
    with op.batch_alter_table('job_dependencies', schema=None) as batch_op:
        batch_op.create_index('ix_job_dependencies_child_id', ['child_id'], unique=False)

    op.create_table('job_notified_users',
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_notified_users_job_id_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_job_notified_users_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'user_id', name=op.f('pk_job_notified_users'))
    )
    op.create_table('job_software_requirements',
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('software_id', sa.Integer(), nullable=False),
    sa.Column('min_version', sa.String(length=64), nullable=True),
    sa.Column('max_version', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_software_requirements_job_id_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['software_id'], ['software.id'], name=op.f('fk_job_software_requirements_software_id_software'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'software_id', name=op.f('pk_job_software_requirements'))
    )
    op.create_table('job_tag_requirements',
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('tag_id', sa.Integer(), nullable=False),
    sa.Column('negate', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_tag_requirements_job_id_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tag_id'], ['tags.id'], name=op.f('fk_job_tag_requirements_tag_id_tags'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'tag_id', name=op.f('pk_job_tag_requirements'))
    )
    op.create_table('job_tags',
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('tag_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_tags_job_id_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tag_id'], ['tags.id'], name=op.f('fk_job_tags_tag_id_tags'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'tag_id', name=op.f('pk_job_tags'))
    )
    op.create_table('tasks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('frame', sa.Integer(), nullable=False),
    sa.Column('tile', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('agent_id', sa.String(length=36), nullable=True),
    sa.Column('assignment_id', sa.String(length=36), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('progress', sa.Double(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_failed_agent_id', sa.String(length=36), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('assigned_at', sa.DateTime(), nullable=True),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_tasks_agent_id_agents'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_tasks_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tasks'))
    )
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index('ix_tasks_agent_id_state', ['agent_id', 'state'], unique=False)
        batch_op.create_index('ix_tasks_job_id_state_frame', ['job_id', 'state', 'frame'], unique=False)

    op.create_table('task_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('agent_id', sa.String(length=36), nullable=True),
    sa.Column('assignment_id', sa.String(length=36), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('assigned_at', sa.DateTime(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], name=op.f('fk_task_attempts_task_id_tasks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_task_attempts')),
    sa.UniqueConstraint('task_id', 'attempt', name='uq_task_attempts_task_id_attempt')
    )
    with op.batch_alter_table('task_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_task_attempts_agent_id_assigned_at', ['agent_id', 'assigned_at'], unique=False)
        batch_op.create_index('ix_task_attempts_assignment_id', ['assignment_id'], unique=False)

    jobtypes = sa.table(
        "jobtypes",
        sa.column("name", sa.String), sa.column("description", sa.Text),
        sa.column("parameters", sa.JSON), sa.column("created_at",
                                                    sa.DateTime))
    op.bulk_insert(jobtypes, [{
        "name": "command",
        "description": "Runs data.argv (in data.cwd, if given) with {start}, "
                       "{end}, {by} and {frame} replaced by the "
                       "assignment's frames.",
        "parameters": COMMAND_PARAMETERS,
        "created_at": datetime.now(timezone.utc).replace(tzinfo=None),
    }])



def downgrade():
    """Undo this revision."""

    with op.batch_alter_table('task_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_task_attempts_assignment_id')
        batch_op.drop_index('ix_task_attempts_agent_id_assigned_at')

    op.drop_table('task_attempts')
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_job_id_state_frame')
        batch_op.drop_index('ix_tasks_agent_id_state')

    op.drop_table('tasks')
    op.drop_table('job_tags')
    op.drop_table('job_tag_requirements')
    op.drop_table('job_software_requirements')
    op.drop_table('job_notified_users')
    with op.batch_alter_table('job_dependencies', schema=None) as batch_op:
        batch_op.drop_index('ix_job_dependencies_child_id')

    op.drop_table('job_dependencies')
    op.drop_table('agent_tags')
    op.drop_table('agent_software')
    with op.batch_alter_table('agent_job_failures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agent_job_failures_job_id'))

    op.drop_table('agent_job_failures')
    op.drop_table('software_versions')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_jobs_user_id'))
        batch_op.drop_index(batch_op.f('ix_jobs_state'))
        batch_op.drop_index(batch_op.f('ix_jobs_jobqueue_id'))

    op.drop_table('jobs')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_tokens_user_id'))

    op.drop_table('api_tokens')
    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agents_state'))
        batch_op.drop_index(batch_op.f('ix_agents_hostname'))

    op.drop_table('agents')
    op.drop_table('users')
    op.drop_table('tags')
    op.drop_table('software')
    op.drop_table('jobtypes')
    op.drop_table('jobqueues')


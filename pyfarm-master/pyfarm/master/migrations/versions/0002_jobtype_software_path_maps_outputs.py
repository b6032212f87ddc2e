"""Job types name their software; path maps; the files an attempt wrote.

Adds ``jobtypes.software``, the ``path_maps`` table and
``task_attempts.outputs``. Written by hand; columns are added and
dropped in batch mode, which SQLite needs (it copies the table) and
PostgreSQL runs as plain ``ALTER TABLE``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    """Apply this revision."""
    with op.batch_alter_table("jobtypes") as batch_op:
        batch_op.add_column(
            sa.Column("software", sa.String(length=64), nullable=True))
    op.create_table(
        "path_maps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("linux", sa.String(length=1024), nullable=True),
        sa.Column("windows", sa.String(length=1024), nullable=True),
        sa.Column("mac", sa.String(length=1024), nullable=True),
        sa.Column("tag_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tag_id"], ["tags.id"],
            name=op.f("fk_path_maps_tag_id_tags"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_path_maps")),
    )
    with op.batch_alter_table("task_attempts") as batch_op:
        batch_op.add_column(sa.Column("outputs", sa.JSON(), nullable=True))


def downgrade():
    """Undo this revision (the path maps and outputs are lost)."""
    with op.batch_alter_table("task_attempts") as batch_op:
        batch_op.drop_column("outputs")
    op.drop_table("path_maps")
    with op.batch_alter_table("jobtypes") as batch_op:
        batch_op.drop_column("software")

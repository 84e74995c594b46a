"""Rating forms per project: `projects.form` (JSON, the form's declaration; null for every
existing project, which keeps InstructGPT's form, the default). Only adds: every existing row
is kept as it was.

Revision ID: 0004
Revises: 0003
Create Date: 2025-09-08
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("projects", sa.Column("form", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("form")

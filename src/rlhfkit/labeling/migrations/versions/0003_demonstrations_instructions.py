"""Demonstrations and project instructions: `projects.instructions` (Markdown) and
`projects.min_chars` (a demonstration's shortest length; 0 for every existing project),
`items.context` (text shown to the labeler beside the prompt), `assignments.draft` (a
demonstration being written, autosaved), and `demonstration_ratings` (admins' 1-7 ratings of
written demonstrations). Only adds: every existing row is kept as it was.

Revision ID: 0003
Revises: 0002
Create Date: 2025-09-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("projects", sa.Column("instructions", sa.Text(), nullable=True))
    op.add_column("projects", sa.Column("min_chars", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("items", sa.Column("context", sa.Text(), nullable=True))
    op.add_column("assignments", sa.Column("draft", sa.Text(), nullable=True))
    op.create_table(
        "demonstration_ratings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("answer_id", sa.Integer(), sa.ForeignKey("answers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("answer_id", "user_id", name="uq_demorating_answer_user"),
    )
    op.create_index("ix_demonstration_ratings_answer_id", "demonstration_ratings", ["answer_id"])
    op.create_index("ix_demonstration_ratings_user_id", "demonstration_ratings", ["user_id"])


def downgrade() -> None:
    op.drop_table("demonstration_ratings")
    with op.batch_alter_table("assignments") as batch:
        batch.drop_column("draft")
    with op.batch_alter_table("items") as batch:
        batch.drop_column("context")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("min_chars")
        batch.drop_column("instructions")

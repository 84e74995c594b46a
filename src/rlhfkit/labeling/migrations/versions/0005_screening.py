"""Labeler screening (InstructGPT, Ouyang et al. 2022, appendix B.1): `screenings` (the parts of a
screening: a gold-flag rating project, a gold ranking project, a demonstration project, and the
self-assessment's topics), `self_assessments` (a candidate's comfort per topic), `admissions`
(who admitted or revoked a labeler, when, how), and on `projects` the screening a project
requires (`screening`, by name) with its admission thresholds (`screening_thresholds`). Only
adds: every existing row is kept, and no existing project requires a screening.

`projects.screening` holds the screening's name without a foreign key: SQLite adds a constraint
only by rebuilding the table (batch mode), and dropping the old `projects` with foreign keys on
would cascade-delete every item. The store checks the name instead.

Revision ID: 0005
Revises: 0004
Create Date: 2025-09-15
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("projects", sa.Column("screening", sa.String(128), nullable=True))
    op.add_column("projects", sa.Column("screening_thresholds", sa.JSON(none_as_null=True), nullable=True))
    op.create_table(
        "screenings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("flags_project_id", sa.Integer(), sa.ForeignKey("projects.id"), nullable=True),
        sa.Column("ranking_project_id", sa.Integer(), sa.ForeignKey("projects.id"), nullable=True),
        sa.Column("demonstration_project_id", sa.Integer(), sa.ForeignKey("projects.id"), nullable=True),
        sa.Column("topics", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "self_assessments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("screening_id", sa.Integer(), sa.ForeignKey("screenings.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("screening_id", "user_id", name="uq_selfassessment_screening_user"),
    )
    op.create_index("ix_self_assessments_screening_id", "self_assessments", ["screening_id"])
    op.create_index("ix_self_assessments_user_id", "self_assessments", ["user_id"])
    op.create_table(
        "admissions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("admitted", sa.Boolean(), nullable=False),
        sa.Column("decided_by", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("how", sa.String(16), nullable=False),
        sa.Column("scores", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_admissions_project_id", "admissions", ["project_id"])
    op.create_index("ix_admissions_user_id", "admissions", ["user_id"])


def downgrade() -> None:
    op.drop_table("admissions")
    op.drop_table("self_assessments")
    op.drop_table("screenings")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("screening_thresholds")
        batch.drop_column("screening")

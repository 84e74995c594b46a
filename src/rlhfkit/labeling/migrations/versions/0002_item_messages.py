"""Items keep a conversational prompt as messages: `items.messages`, a JSON list of
{"role", "content"} (null for a plain-text prompt; `items.prompt` then holds the text, and for a
conversation its HH-style transcript).

Revision ID: 0002
Revises: 0001
Create Date: 2025-06-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("items", sa.Column("messages", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.drop_column("messages")

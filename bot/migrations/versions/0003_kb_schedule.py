"""Indexes for the in-effect publication read before every request; who drafted each revision

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 19:50:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('kb_revisions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('drafted_by', sa.String(length=64), nullable=True))
    with op.batch_alter_table('kb_publications', schema=None) as batch_op:
        batch_op.create_index('ix_kb_publications_immediate', ['published_at', 'id'], unique=False,
                              sqlite_where=sa.text('effective_from IS NULL'),
                              postgresql_where=sa.text('effective_from IS NULL'))
        batch_op.create_index('ix_kb_publications_scheduled', ['effective_from', 'id'], unique=False,
                              sqlite_where=sa.text('effective_from IS NOT NULL'),
                              postgresql_where=sa.text('effective_from IS NOT NULL'))


def downgrade() -> None:
    with op.batch_alter_table('kb_publications', schema=None) as batch_op:
        batch_op.drop_index('ix_kb_publications_scheduled')
        batch_op.drop_index('ix_kb_publications_immediate')
    with op.batch_alter_table('kb_revisions', schema=None) as batch_op:
        batch_op.drop_column('drafted_by')

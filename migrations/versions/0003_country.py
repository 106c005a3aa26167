"""bring your own country: named institution layers, event layer versions, derived ancestors

Revision ID: 0003_country
Revises: 0002
Create Date: 2026-12-01 12:00:00

Institutions belonged to nothing but their dataset, so a second upload of the same inventory
appended a second copy of every facility. They now belong to a named layer that a new upload
of the same name replaces whole. Event layers get the same version counter. Ancestors made by
dissolving a child level's file on its parent-code column are marked `derived`, so that the
real boundary file of their level, loaded later, replaces them and the summary says so.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003_country'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'institution_layers',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('version', sa.Integer(), server_default='0', nullable=False),
        sa.Column('dataset_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_institution_layers_dataset_id_datasets'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_institution_layers')),
        sa.UniqueConstraint('name', name=op.f('uq_institution_layers_name')),
    )
    op.add_column('institutions', sa.Column('layer_id', sa.Integer(), nullable=True))
    op.create_index(op.f('ix_institutions_layer_id'), 'institutions', ['layer_id'], unique=False)
    op.create_foreign_key(op.f('fk_institutions_layer_id_institution_layers'), 'institutions', 'institution_layers', ['layer_id'], ['id'], ondelete='CASCADE')
    # Institutions loaded before layers existed: one layer per dataset, named after its file.
    op.execute(
        "INSERT INTO institution_layers (name, version, dataset_id) "
        "SELECT DISTINCT ON (d.name) d.name, 1, d.id FROM datasets d "
        "WHERE d.kind = 'institutions' AND EXISTS (SELECT 1 FROM institutions i WHERE i.dataset_id = d.id) "
        "ORDER BY d.name, d.id DESC"
    )
    op.execute(
        "UPDATE institutions i SET layer_id = l.id FROM datasets d, institution_layers l "
        "WHERE d.id = i.dataset_id AND l.name = d.name"
    )
    op.add_column('event_layers', sa.Column('version', sa.Integer(), server_default='0', nullable=False))
    op.add_column('event_layers', sa.Column('dataset_id', sa.Integer(), nullable=True))
    op.create_foreign_key(op.f('fk_event_layers_dataset_id_datasets'), 'event_layers', 'datasets', ['dataset_id'], ['id'], ondelete='SET NULL')
    op.add_column('localities', sa.Column('derived', sa.Boolean(), server_default='false', nullable=False))


def downgrade() -> None:
    op.drop_column('localities', 'derived')
    op.drop_constraint(op.f('fk_event_layers_dataset_id_datasets'), 'event_layers', type_='foreignkey')
    op.drop_column('event_layers', 'dataset_id')
    op.drop_column('event_layers', 'version')
    op.drop_constraint(op.f('fk_institutions_layer_id_institution_layers'), 'institutions', type_='foreignkey')
    op.drop_index(op.f('ix_institutions_layer_id'), table_name='institutions')
    op.drop_column('institutions', 'layer_id')
    op.drop_table('institution_layers')

"""survey uncertainty on observations, design effect on indicators, household microdata

Revision ID: 0004_behind
Revises: 0003_country
Create Date: 2026-12-02 09:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0004_behind'
down_revision: str | None = '0003_country'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KINDS = ("'localities', 'population', 'hazard', 'events', 'institutions', 'indicators', "
             "'observations', 'priorities'")
NEW_KINDS = OLD_KINDS + ", 'households'"


def upgrade() -> None:
    op.add_column('observations', sa.Column('standard_error', sa.Float(), nullable=True))
    op.add_column('observations', sa.Column('ci_low', sa.Float(), nullable=True))
    op.add_column('observations', sa.Column('ci_high', sa.Float(), nullable=True))
    op.create_check_constraint(op.f('ck_observations_standard_error'), 'observations',
                               'standard_error IS NULL OR standard_error >= 0')
    op.create_check_constraint(op.f('ck_observations_interval'), 'observations',
                               'ci_low IS NULL OR ci_high IS NULL OR ci_low <= ci_high')
    op.add_column('indicators', sa.Column('design_effect', sa.Float(), nullable=True))
    op.drop_constraint(op.f('ck_datasets_kind'), 'datasets', type_='check')
    op.create_check_constraint(op.f('ck_datasets_kind'), 'datasets', f'kind IN ({NEW_KINDS})')
    op.create_table(
        'household_records',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('locality_id', sa.Integer(), nullable=False),
        sa.Column('period', sa.String(length=40), nullable=False),
        sa.Column('household_id', sa.String(length=100), nullable=False),
        sa.Column('person_id', sa.String(length=100), nullable=False),
        sa.Column('weight', sa.Float(), nullable=False),
        sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column('indicator_values', postgresql.JSONB(astext_type=sa.Text()),
                  nullable=False),
        sa.Column('dataset_id', sa.Integer(), nullable=True),
        sa.CheckConstraint('weight > 0', name=op.f('ck_household_records_weight')),
        sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'],
                                name=op.f('fk_household_records_dataset_id_datasets'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['locality_id'], ['localities.id'],
                                name=op.f('fk_household_records_locality_id_localities'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_household_records')),
        sa.UniqueConstraint('locality_id', 'period', 'household_id', 'person_id',
                            name='uq_household_records_person'),
    )
    op.create_index(op.f('ix_household_records_locality_id'), 'household_records',
                    ['locality_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_household_records_locality_id'), table_name='household_records')
    op.drop_table('household_records')
    op.execute("DELETE FROM datasets WHERE kind = 'households'")
    op.drop_constraint(op.f('ck_datasets_kind'), 'datasets', type_='check')
    op.create_check_constraint(op.f('ck_datasets_kind'), 'datasets', f'kind IN ({OLD_KINDS})')
    op.drop_column('indicators', 'design_effect')
    op.drop_constraint(op.f('ck_observations_interval'), 'observations', type_='check')
    op.drop_constraint(op.f('ck_observations_standard_error'), 'observations', type_='check')
    op.drop_column('observations', 'ci_high')
    op.drop_column('observations', 'ci_low')
    op.drop_column('observations', 'standard_error')

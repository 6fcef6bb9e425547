"""SQLAlchemy 2 ORM models: materials, calculations, properties, subsets and cached features."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

SCHEMA_VERSION = 7  # 2 added the campaign tables; 3 made computed born_charges |Tr Z*|/3 like imported ones;
# 4 added calculations.cpu_seconds; 5 added the OPTIMADE formula columns of materials; 6 campaign picks' values of
# several properties; 7 campaign picks' level of theory (a material may be picked once per level)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Meta(Base):
    """Key/value facts about the database itself (schema version, creating code version)."""

    __tablename__ = "tansaku_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Material(Base):
    """A material: a structure when one is known, else only a composition (e.g. a row of a CSV table)."""

    __tablename__ = "materials"
    __table_args__ = (
        UniqueConstraint("source", "source_id", name="uq_material_source"),
        Index("ix_material_reduced_formula", "reduced_formula"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    formula: Mapped[str] = mapped_column(String(256))
    reduced_formula: Mapped[str] = mapped_column(String(256))
    elements: Mapped[str] = mapped_column(String(256))  # sorted symbols joined by "," for cheap filtering
    nelements: Mapped[int] = mapped_column(Integer)
    # OPTIMADE's forms (alphabetical 'BaO3Ti', anonymous 'A3BC'); None for fractional compositions
    formula_alphabetical: Mapped[str | None] = mapped_column(String(256), nullable=True)
    formula_anonymous: Mapped[str | None] = mapped_column(String(256), nullable=True)
    structure_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    nsites: Mapped[int | None] = mapped_column(Integer, nullable=True)
    spacegroup_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    spacegroup_symbol: Mapped[str | None] = mapped_column(String(32), nullable=True)
    source: Mapped[str] = mapped_column(String(128))
    source_id: Mapped[str] = mapped_column(String(512))
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("materials.id"), nullable=True)
    extra: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    properties: Mapped[list[Property]] = relationship(back_populates="material", cascade="all, delete-orphan")
    calculations: Mapped[list[Calculation]] = relationship(
        back_populates="material", cascade="all, delete-orphan"
    )

    def structure(self):
        """The pymatgen Structure, or None for composition-only materials."""
        if self.structure_json is None:
            return None
        from pymatgen.core import Structure

        return Structure.from_dict(json.loads(self.structure_json))


class Subset(Base):
    """Named membership lists, e.g. the 1,266 oxides the reference paper trained on ('paper')."""

    __tablename__ = "subsets"
    __table_args__ = (UniqueConstraint("name", "material_id", name="uq_subset_member"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    material_id: Mapped[int] = mapped_column(ForeignKey("materials.id", ondelete="CASCADE"))


class Calculation(Base):
    """One step of a workflow run on one material, with everything needed to audit or resume it."""

    __tablename__ = "calculations"
    __table_args__ = (
        UniqueConstraint("material_id", "workflow", "step", "preset", name="uq_calculation_step"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    material_id: Mapped[int] = mapped_column(ForeignKey("materials.id", ondelete="CASCADE"))
    workflow: Mapped[str] = mapped_column(String(64))
    step: Mapped[str] = mapped_column(String(64))
    preset: Mapped[str] = mapped_column(String(64), default="")
    engine: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), default="created")
    inputs: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    outputs: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    work_dir: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    code_version: Mapped[str | None] = mapped_column(String(128), nullable=True)
    cpu_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)  # every attempt, every process
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    material: Mapped[Material] = relationship(back_populates="calculations")


class Property(Base):
    """A scalar property value (tensor average for tensors) with its method and provenance."""

    __tablename__ = "properties"
    __table_args__ = (
        UniqueConstraint("material_id", "name", "method", name="uq_property_method"),
        Index("ix_property_name", "name"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    material_id: Mapped[int] = mapped_column(ForeignKey("materials.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    tensor: Mapped[Any | None] = mapped_column(JSON, nullable=True)
    unit: Mapped[str | None] = mapped_column(String(32), nullable=True)
    method: Mapped[str] = mapped_column(String(128))
    extra: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    calculation_id: Mapped[int | None] = mapped_column(
        ForeignKey("calculations.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    material: Mapped[Material] = relationship(back_populates="properties")


class FeatureCache(Base):
    """Descriptor vectors of one material for one featurizer version, so retraining skips featurization."""

    __tablename__ = "feature_cache"
    __table_args__ = (UniqueConstraint("material_id", "featurizer", name="uq_feature_cache"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    material_id: Mapped[int] = mapped_column(ForeignKey("materials.id", ondelete="CASCADE"))
    featurizer: Mapped[str] = mapped_column(String(128))  # name@version
    values: Mapped[bytes] = mapped_column(LargeBinary)  # float64 little-endian


class Campaign(Base):
    """A closed-loop search: its configuration, and why it stopped."""

    __tablename__ = "campaigns"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    config: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(32), default="running")  # running, finished
    stop_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    final_model: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    runner: Mapped[str | None] = mapped_column(String(256), nullable=True)  # host:pid of the process running it
    heartbeat: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class CampaignRound(Base):
    """One train → suggest → compute round; 'computing' until every pick has an outcome."""

    __tablename__ = "campaign_rounds"
    __table_args__ = (UniqueConstraint("campaign_id", "number", name="uq_campaign_round"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32), default="computing")  # computing, done
    model: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # training size and CV metrics
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class CampaignPick(Base):
    """A candidate chosen in a round, why, and what the calculation (or oracle) gave; never chosen twice at one
    level of theory ("" in a campaign with one level; "cheap" then "expensive" in a two-level one)."""

    __tablename__ = "campaign_picks"
    __table_args__ = (UniqueConstraint("campaign_id", "material_id", "level", name="uq_campaign_pick_level"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    round_id: Mapped[int] = mapped_column(ForeignKey("campaign_rounds.id", ondelete="CASCADE"))
    material_id: Mapped[int] = mapped_column(ForeignKey("materials.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(String(256))  # strategy and score, or 'initial random'
    level: Mapped[str] = mapped_column(String(16), default="", server_default="")  # "", cheap, expensive
    mean: Mapped[float | None] = mapped_column(Float, nullable=True)
    std: Mapped[float | None] = mapped_column(Float, nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    cost_estimate: Mapped[float | None] = mapped_column(Float, nullable=True)  # CPU hours
    status: Mapped[str] = mapped_column(String(32), default="pending")  # pending, done, metal, failed
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    # a campaign with several goals: every goal property's value ({"band_gap": 3.2, "eps_total": 24.0})
    values_by_property: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    cpu_hours: Mapped[float | None] = mapped_column(Float, nullable=True)

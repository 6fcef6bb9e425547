"""The materials database (SQLite by default, any SQLAlchemy URL such as PostgreSQL at scale)."""

from tansaku.store.database import Database, open_database, resolve_url
from tansaku.store.tables import (
    Calculation,
    Campaign,
    CampaignPick,
    CampaignRound,
    FeatureCache,
    Material,
    Property,
    Subset,
)

__all__ = [
    "Calculation",
    "Campaign",
    "CampaignPick",
    "CampaignRound",
    "Database",
    "FeatureCache",
    "Material",
    "Property",
    "Subset",
    "open_database",
    "resolve_url",
]

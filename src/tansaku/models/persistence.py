"""Saving and loading models with the metadata needed to trust them later."""

from __future__ import annotations

import pickle
import uuid
from datetime import UTC, datetime
from pathlib import Path

from tansaku import TansakuError, __version__
from tansaku.features.sets import featurizer_key
from tansaku.files import write_atomically

FORMAT = "tansaku-model-1"


def save_model(path: Path, model, *, property_name: str, feature_set: str, model_name: str,
               feature_names: list[str], training_hash: str, n_train: int, metrics: dict | None = None,
               extra: dict | None = None, transform: str | None = None, log_target: bool | None = None) -> dict:
    """`feature_set` is what the user chose ("structure"); `descriptors` what the model reads ("structure+ions").
    `transform`: what the model learned in ("log10" or "none"; `log_target` is the older way to say it, and is
    still written for readers of older tansaku). `extra`: more provenance (where lgbm-attn's network started)."""
    transform = transform or ("log10" if log_target else "none")
    from tansaku.models.learners import model_feature_set

    descriptors = model_feature_set(model, feature_set)
    meta = {
        "format": FORMAT, "id": f"{model_name}-{property_name}-{uuid.uuid4().hex[:8]}",
        "model": model_name, "property": property_name, "feature_set": feature_set, "descriptors": descriptors,
        "descriptor_version": featurizer_key(descriptors), "transform": transform,
        "log_target": transform == "log10",
        "feature_names": feature_names, "training_hash": training_hash, "n_train": n_train,
        "metrics": metrics or {}, "tansaku_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"), **(extra or {}),
    }
    write_atomically(path, lambda handle: pickle.dump({"meta": meta, "model": model}, handle))
    return meta


def load_model(path: Path) -> tuple[object, dict]:
    """The fitted model and its metadata; refuses files that are not models or use other descriptors."""
    try:
        with open(path, "rb") as handle:
            data = pickle.load(handle)  # noqa: S301 - model files are the user's own
    except FileNotFoundError as exc:
        raise TansakuError(f"{path}: no such model file") from exc
    except Exception as exc:  # noqa: BLE001
        raise TansakuError(f"{path}: not a tansaku model file ({type(exc).__name__})") from exc
    if not isinstance(data, dict) or data.get("meta", {}).get("format") != FORMAT:
        raise TansakuError(f"{path}: not a tansaku model file")
    meta = data["meta"]
    meta.setdefault("descriptors", meta["feature_set"])  # models saved before extra blocks existed
    current = featurizer_key(meta["descriptors"])
    if meta["descriptor_version"] != current:
        raise TansakuError(f"{path}: trained with descriptors {meta['descriptor_version']}, this tansaku computes "
                           f"{current}; retrain the model")
    return data["model"], meta

"""Learners that give a mean and a standard deviation: forests (spread of trees), LightGBM bags, blends."""

from __future__ import annotations

import warnings

import numpy as np
from joblib import effective_n_jobs
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.utils.parallel import Parallel, delayed  # passes sklearn's config to the threads, which call trees

from tansaku import TansakuError
from tansaku.features import ions
from tansaku.features.sets import base_set
from tansaku.models.calibration import Calibrated
from tansaku.models.members import sample_members
from tansaku.models.stacking import LinearStacked


class ForestWithSpread(RegressorMixin, BaseEstimator):
    """A random or extra-trees forest; the uncertainty is the spread of its trees' predictions."""

    oob = False  # what models saved before the option existed mean: they keep working (get_params, clone)

    def __init__(self, kind: str = "rf", n_estimators: int = 500, max_features: float = 0.33,
                 min_samples_leaf: int = 1, random_state: int = 0, n_jobs: int = -1, oob: bool = False):
        self.kind = kind
        self.oob = oob
        self.n_estimators = n_estimators
        self.max_features = max_features
        self.min_samples_leaf = min_samples_leaf
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y):
        cls = RandomForestRegressor if self.kind == "rf" else ExtraTreesRegressor
        self.forest_ = cls(n_estimators=self.n_estimators, max_features=self.max_features,
                           min_samples_leaf=self.min_samples_leaf, random_state=self.random_state,
                           n_jobs=self.n_jobs).fit(X, y)
        self.training_X_ = np.asarray(X, dtype=np.float32) if self.oob else None
        self.feature_importances_ = self.forest_.feature_importances_
        self.shift_ = float(np.mean(y))  # moments are summed around it, against cancellation
        return self

    def predict(self, X):
        return self.forest_.predict(X)

    def oob_prediction(self) -> np.ndarray:
        """Each training row predicted by the trees that never saw it (bootstrap forests with oob=True):
        honest residuals on the labelled data without a separate validation split; NaN where no tree left it
        out."""
        if not (self.oob and self.kind == "rf"):
            raise TansakuError("out-of-bag predictions need a bootstrap random forest fitted with oob=True")
        X = self.training_X_
        total, votes = np.zeros(len(X)), np.zeros(len(X))
        for tree, in_bag in zip(self.forest_.estimators_, self.forest_.estimators_samples_, strict=True):
            out = np.ones(len(X), dtype=bool)
            out[in_bag] = False
            total[out] += tree.predict(X[out])
            votes[out] += 1
        with np.errstate(invalid="ignore"):
            return np.where(votes > 0, total / np.maximum(votes, 1), np.nan)  # NaN: every tree saw the row

    def _tree_groups(self):
        trees = self.forest_.estimators_
        n = max(1, min(len(trees), effective_n_jobs(self.n_jobs)))
        return [trees[i::n] for i in range(n)]

    def predict_samples(self, X) -> np.ndarray:
        """Every tree's prediction (trees x rows): the ensemble's empirical predictive distribution."""
        X = np.asarray(X, dtype=np.float32)  # trees convert to float32 anyway; doing it once saves a copy per tree
        trees = self.forest_.estimators_
        out = np.empty((len(trees), len(X)))

        def fill(i: int) -> None:
            out[i] = trees[i].predict(X)

        # tree prediction releases the GIL, so threads use every core without copying X
        Parallel(n_jobs=self.n_jobs, prefer="threads")(delayed(fill)(i) for i in range(len(trees)))
        return out

    def predict_dist(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread of the trees, accumulated per thread: no trees x rows array for large pools."""
        X = np.asarray(X, dtype=np.float32)
        shift = getattr(self, "shift_", 0.0)  # models saved before shift_ existed

        def moments(group) -> tuple[np.ndarray, np.ndarray]:
            total, squares = np.zeros(len(X)), np.zeros(len(X))
            for tree in group:
                p = tree.predict(X) - shift
                total += p
                squares += p * p
            return total, squares

        groups = self._tree_groups()
        parts = Parallel(n_jobs=len(groups), prefer="threads")(delayed(moments)(g) for g in groups)
        n = len(self.forest_.estimators_)
        mean = sum(t for t, _ in parts) / n
        var = np.maximum(sum(q for _, q in parts) / n - mean * mean, 0.0)
        return mean + shift, np.sqrt(var)


class LGBMBag(RegressorMixin, BaseEstimator):
    """Several LightGBM models on bootstrap-like subsamples with different seeds; spread = uncertainty."""

    def __init__(self, n_models: int = 3, n_estimators: int = 800, learning_rate: float = 0.04,
                 num_leaves: int = 15, min_child_samples: int = 5, colsample_bytree: float = 0.3,
                 subsample: float = 0.8, reg_lambda: float = 1.0, random_state: int = 0,
                 n_jobs: int | None = None):  # None: OpenMP's threads, all cores unless OMP_NUM_THREADS is set
        self.n_models = n_models
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.colsample_bytree = colsample_bytree
        self.subsample = subsample
        self.reg_lambda = reg_lambda
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y):
        import lightgbm

        self.models_ = []
        for i in range(self.n_models):
            model = lightgbm.LGBMRegressor(
                n_estimators=self.n_estimators, learning_rate=self.learning_rate, num_leaves=self.num_leaves,
                min_child_samples=self.min_child_samples, colsample_bytree=self.colsample_bytree,
                subsample=self.subsample, subsample_freq=1, reg_lambda=self.reg_lambda,
                random_state=self.random_state * 100 + i, n_jobs=self.n_jobs, verbose=-1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.models_.append(model.fit(np.asarray(X), y))
        gains = np.mean([m.booster_.feature_importance("gain") for m in self.models_], axis=0)
        self.feature_importances_ = gains / gains.sum() if gains.sum() else gains
        return self

    def predict(self, X):
        return self.predict_dist(X)[0]

    def predict_dist(self, X):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            preds = np.stack([m.predict(np.asarray(X)) for m in self.models_])
        return preds.mean(axis=0), preds.std(axis=0)


class Blend(RegressorMixin, BaseEstimator):
    """Average of several learners; variance = mean of their variances + variance of their means."""

    def __init__(self, learners: list | None = None, weights: list[float] | None = None):
        self.learners = learners
        self.weights = weights

    def fit(self, X, y):
        self.fitted_ = [clone(learner).fit(X, y) for learner in self.learners]
        w = np.asarray(self.weights or [1.0] * len(self.fitted_), dtype=float)
        self.w_ = w / w.sum()
        self.feature_importances_ = sum(wi * f.feature_importances_ for wi, f in zip(self.w_, self.fitted_,
                                                                                        strict=True))
        return self

    def predict(self, X):
        return self.predict_dist(X)[0]

    def predict_dist(self, X):
        dists = [f.predict_dist(X) for f in self.fitted_]
        means = np.stack([m for m, _ in dists])
        variances = np.stack([s**2 for _, s in dists])
        mean = self.w_ @ means
        var = self.w_ @ variances + self.w_ @ (means - mean) ** 2
        return mean, np.sqrt(var)


class Imputed(RegressorMixin, BaseEstimator):
    """Median imputation (fitted on the training data only) in front of a learner with predict_dist.

    `extra_blocks` names the descriptor blocks the learner expects after the feature set's columns ("ions"):
    whoever builds its input asks `model_feature_set`.
    """

    extra_blocks: tuple[str, ...] = ()  # models saved before the option existed

    def __init__(self, learner=None, extra_blocks: tuple[str, ...] = ()):
        self.learner = learner
        self.extra_blocks = extra_blocks

    def fit(self, X, y):
        self.imputer_ = SimpleImputer(strategy="median", keep_empty_features=True).fit(X)
        self.learner_ = clone(self.learner).fit(self._filled(X), y)
        self.feature_importances_ = self.learner_.feature_importances_
        return self

    def _filled(self, X) -> np.ndarray:
        return fill_missing(X, self.imputer_.statistics_)

    def predict(self, X):
        return self.learner_.predict(self._filled(X))

    def predict_dist(self, X):
        return self.learner_.predict_dist(self._filled(X))

    def oob_prediction(self) -> np.ndarray:
        if not hasattr(self.learner_, "oob_prediction"):
            raise TansakuError(f"{type(self.learner_).__name__} has no out-of-bag predictions")
        return self.learner_.oob_prediction()

    def predict_samples(self, X):
        return sample_members(self.learner_, self._filled(X))


def fill_missing(X, fill: np.ndarray, dtype=np.float64) -> np.ndarray:
    """A copy of X with NaN → the column's value in `fill` (a fitted median imputer's `statistics_`, 0 for columns
    it never saw). float32 suits trees, which compare in float32 anyway: no second conversion.

    What SimpleImputer.transform does, about ten times faster on a pool of 100,000 candidates: it validates and
    fills column by column, which a round of active learning pays on every prediction.
    """
    filled = np.array(X, dtype=dtype)
    if filled.ndim != 2 or filled.shape[1] != len(fill):
        raise ValueError(f"X has {filled.shape[-1]} features, but the model was fitted on {len(fill)}")  # as sklearn
    np.copyto(filled, np.asarray(fill, dtype=dtype), where=np.isnan(filled))
    return filled


MODELS = ("rf", "et", "lgbm", "lgbm-cal", "lgbm-lin", "lgbm-chgnet", "lgbm-attn", "blend")
# the most accurate learner that needs nothing beyond the base install, on composition and on structure
# descriptors, with a calibrated interval (benchmarks/results/ml_dielectric.md)
DEFAULT_MODEL = "lgbm-lin"


def model_feature_set(model, feature_set: str) -> str:
    """The descriptors `model` reads for a feature set: the set plus the extra blocks it asked for
    ("structure" → "structure+ions" for lgbm-lin)."""
    return "+".join([base_set(feature_set), *getattr(model, "extra_blocks", ())])


def make_model(name: str, random_state: int = 0, trees: int = 500, oob: bool = False,
               pretrained: dict | None = None) -> Imputed:
    """rf: the paper's random forest; et: extra trees; lgbm: bagged LightGBM; lgbm-cal: the same with its spread
    rescaled on 3-fold out-of-fold residuals (the raw bag spread covers about 13 % at 68 %); lgbm-lin: lgbm-cal
    with a ridge regression's out-of-fold prediction as one more descriptor (`stacking`), the ridge also reading
    the ion fractions (`features.ions`: build its input with `model_feature_set`); lgbm-chgnet: lgbm-lin that also
    reads what the pretrained CHGNet potential says of each structure (`features.mlip`; structure set only, needs
    `tansaku[mlip]`); lgbm-attn: the average of lgbm-lin and an element-attention network on the composition
    (`models.attention`; needs PyTorch), started from `pretrained` weights (`tansaku pretrain`) when given;
    blend: et + lgbm.

    `trees` sizes the forests; active-learning loops that refit every round use fewer than training does.
    `oob` keeps what a bootstrap forest needs for out-of-bag predictions (rf only).
    """
    if pretrained is not None and name != "lgbm-attn":
        raise TansakuError(f"pretrained weights start the attention network of lgbm-attn; {name!r} has none")
    if oob and name != "rf":
        raise TansakuError(f"out-of-bag predictions need the bootstrap random forest (rf), not {name!r}")
    if name == "rf":
        learner = ForestWithSpread("rf", trees, 0.33, random_state=random_state, oob=oob)
    elif name == "et":
        learner = ForestWithSpread("et", trees, 0.5, random_state=random_state)
    elif name == "lgbm":
        learner = LGBMBag(random_state=random_state)
    elif name == "lgbm-cal":
        learner = Calibrated(LGBMBag(random_state=random_state), folds=3, random_state=random_state)
    elif name in ("lgbm-lin", "lgbm-chgnet", "lgbm-attn"):
        stacked = LinearStacked(LGBMBag(random_state=random_state), random_state=random_state,
                                linear_only=len(ions.names()))  # the ion fractions come last: the ridge's alone
        calibrated = Calibrated(stacked, folds=3, random_state=random_state)
        if name == "lgbm-attn":
            return Imputed(_token_blend(calibrated, pretrained, random_state), extra_blocks=("ions", "tokens"))
        blocks = ("ions",) if name == "lgbm-lin" else ("chgnet", "ions")
        return Imputed(calibrated, extra_blocks=blocks)
    elif name == "blend":
        learner = Blend([ForestWithSpread("et", trees, 0.5, random_state=random_state),
                         LGBMBag(random_state=random_state)])
    else:
        raise TansakuError(f"unknown model {name!r} (choose from {', '.join(MODELS)})")
    return Imputed(learner)


def _token_blend(base, pretrained: dict | None, random_state: int):
    try:
        from tansaku.models.attention import AttentionRegressor, TokenBlend
    except ImportError as error:
        raise TansakuError(f"lgbm-attn needs PyTorch: pip install 'tansaku[mlip]' ({error})") from None
    return TokenBlend(base, AttentionRegressor(pretrained, random_state=random_state))

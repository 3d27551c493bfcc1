"""The predictors' params (params.yaml -> train.quality / train.cost / train.cache) as plain dataclasses.

They live apart from the predictors so that reading the `train` section (`models.train.TrainParams`, e.g. for
`beast metrics`) imports no LightGBM, pandas or scikit-learn; `models.quality`, `models.cost` and `models.cache`
re-export their own class, so `quality.QualityParams` etc. are the same objects as here.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.config import AtLeastTwo, Count, Fraction, NonNegative, NonNegativeInt, Positive, PositiveShare


@dataclass(frozen=True)
class QualityParams:
    """Mirrors params.yaml -> train.quality."""

    test_fraction: Fraction = 0.2
    valid_fraction: Fraction = 0.2  # of the training prompts, to choose heads and stop early
    heads: str = "auto"  # shared | per_model | auto
    num_leaves: AtLeastTwo = 15
    learning_rate: Positive = 0.03
    num_boost_round: Count = 600
    early_stopping_rounds: NonNegativeInt = 50
    min_data_in_leaf: Count = 40
    feature_fraction: PositiveShare = 0.7
    bagging_fraction: PositiveShare = 0.8
    bagging_freq: NonNegativeInt = 1
    lambda_l2: NonNegative = 1.0
    knn_k: Count = 25
    ece_bins: Count = 10
    seed: NonNegativeInt = 0
    prior_fallback: bool = True  # validation says the heads beat no per-model mean: ship the means (constant heads)
    fallback_z: NonNegative = 1.645  # the heads must beat the prior's validation log loss by this many standard errors
    fallback_cv_prompts: NonNegativeInt = (
        2000  # up to this many training prompts, that test scores every prompt (k-fold, rounds fixed)
    )
    fallback_folds: AtLeastTwo = 5
    policy_quality_share: Fraction = (
        0.95  # the bundle's tradeoff lambda: cheapest routing at >= this share of the best model's quality
    )

    def lgb_params(self) -> dict[str, object]:
        keep = (
            "num_leaves",
            "learning_rate",
            "min_data_in_leaf",
            "feature_fraction",
            "bagging_fraction",
            "bagging_freq",
            "lambda_l2",
            "seed",
        )
        return {"objective": "cross_entropy", "metric": "cross_entropy"} | {k: getattr(self, k) for k in keep}


@dataclass(frozen=True)
class CostParams:
    """Mirrors params.yaml -> train.cost."""

    azure_holdout_minutes: Positive = 30.0
    alpaca_test_fraction: Fraction = 0.2
    num_leaves: AtLeastTwo = 31
    learning_rate: Positive = 0.2
    num_boost_round: Count = 60
    min_data_in_leaf: Count = 20
    feature_fraction: PositiveShare = 1.0
    lambda_l2: NonNegative = 0.0
    seed: NonNegativeInt = 0
    time_split_models: tuple[str, ...] = ("azure/conv", "azure/code")  # evaluated on a time split ("azure.")
    split_salt: str = "beast"  # group_split salt for the prompt-grouped rows ("alpaca.")
    p90_calibration_fraction: Fraction = 0.2  # share of the train side held out to calibrate P90; 0 = off


@dataclass(frozen=True)
class CacheParams:
    """Mirrors params.yaml -> train.cache."""

    horizon_s: Positive = 300.0
    holdout_fraction_of_time: Fraction = 0.25
    num_leaves: AtLeastTwo = 31
    learning_rate: Positive = 0.05
    num_boost_round: Count = 300
    min_data_in_leaf: Count = 20
    feature_fraction: PositiveShare = 1.0
    lambda_l2: NonNegative = 0.0
    seed: NonNegativeInt = 0

    def booster_params(self) -> dict[str, object]:
        return {
            "objective": "binary",
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "lambda_l2": self.lambda_l2,
            "seed": self.seed,
            "num_threads": 1,  # ~10k rows: one thread is fastest, and OpenMP spin-waits on a busy machine
        }

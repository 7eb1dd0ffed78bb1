"""Components a policy names by ``kind``: classifiers and rewards, built through an
explicit registry (``CLASSIFIERS``, ``REWARDS``) from their YAML specs.
"""

from guard.components.base import Candidate, Classifier, Reward, Subject, Verdict
from guard.components.registry import (
    CLASSIFIERS,
    REWARDS,
    BuildContext,
    build_classifier,
    build_reward,
)
from guard.components.specs import AnyClassifier, AnyReward, ClassifierSpec, RemoteModel, RewardSpec

__all__ = [
    "CLASSIFIERS",
    "REWARDS",
    "AnyClassifier",
    "AnyReward",
    "BuildContext",
    "Candidate",
    "Classifier",
    "ClassifierSpec",
    "RemoteModel",
    "Reward",
    "RewardSpec",
    "Subject",
    "Verdict",
    "build_classifier",
    "build_reward",
]

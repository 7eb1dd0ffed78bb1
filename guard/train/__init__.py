"""Training the built-in heads offline: the embedding classifier's head, the attack
detector's head (``guard.train.attack_head``) and the
embedding reward's head, from dev data alone. Never imported by the serving path.
"""

from guard.train.calibration import LABELS, UNSAFE_LABELS, choose_label_thresholds, unsafe_score
from guard.train.embedding_head import Config, run

__all__ = [
    "LABELS",
    "UNSAFE_LABELS",
    "Config",
    "choose_label_thresholds",
    "run",
    "unsafe_score",
]

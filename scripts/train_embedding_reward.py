#!/usr/bin/env python
"""Reproduce guard/data/embedding_reward.* from the dev pairs: see guard/reward_training.py.

Usage: nice -n 10 .venv/bin/python scripts/train_embedding_reward.py [--compare] [--no-cv]
"""

import sys

from guard.train.reward_head import main

if __name__ == "__main__":
    sys.exit(main())

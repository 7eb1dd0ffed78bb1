#!/usr/bin/env python
"""Reproduce guard/data/embedding_head.* from the dev data: see guard/training.py.

Usage: HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python scripts/train_embedding_head.py [--no-cv]
"""

import sys

from guard.train.embedding_head import main

if __name__ == "__main__":
    sys.exit(main())

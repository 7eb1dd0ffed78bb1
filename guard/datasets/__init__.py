"""Labelled safety data sets: the catalogue (names, licences, where the files are) and
the readers that turn each set's files into ``Example`` rows. A leaf: imports no other
guard package.
"""

from guard.datasets.catalog import (
    DATASETS,
    LICENCES,
    Dataset,
    Licence,
    data_root,
    load,
    names,
    sha256,
    trainable,
)
from guard.datasets.readers import OPENAI_CATEGORIES, Example, text_group

__all__ = [
    "DATASETS",
    "LICENCES",
    "OPENAI_CATEGORIES",
    "Dataset",
    "Example",
    "Licence",
    "data_root",
    "load",
    "names",
    "sha256",
    "text_group",
    "trainable",
]

"""One policy's stages for one request: input rails, generation, best-of-n, critique and
revision, output rails, guarded streaming.
"""

from guard.pipeline.checks import check_runnable, unsupported
from guard.pipeline.context import RequestContext
from guard.pipeline.inputs import input_subjects
from guard.pipeline.rails import SEVERITY, Judgement, Rail, RailReport, Stage, judge
from guard.pipeline.runner import Pipeline
from guard.pipeline.subjects import output_subjects
from guard.pipeline.trace import Trace

__all__ = [
    "SEVERITY",
    "Judgement",
    "Pipeline",
    "Rail",
    "RailReport",
    "RequestContext",
    "Stage",
    "Trace",
    "check_runnable",
    "input_subjects",
    "judge",
    "output_subjects",
    "unsupported",
]

"""The blockwise stages, in order: the one table everything else is derived from.

A blockwise run is a sequence of stages. A ``map`` stage is one job per block (a Distributed
Map over the block manifest on AWS, a loop on one machine); a ``reduce`` stage is one job that
reads every block's small outputs; a ``setup`` stage is one job that prepares what the maps
after it need. Each stage belongs to one workflow step (a Batch task of the state machine):
``Detect`` or ``PublishToBoss``, whose user errors are recorded under that step.

Derived from :data:`STAGES`: the ``step blocks --stage`` choices and which need ``--block``
(``cli/block_commands.py``, ``workflow/blockwise_job.py``), the order the one-machine runner
executes (``blockwise/runner.py``). The ASL (JSON) writes the stage names literally;
``tests/test_asl.py`` checks that its blockwise states run exactly these stages in this order,
the map stages inside Distributed Maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

StageKind = Literal["setup", "map", "reduce"]

#: The workflow steps (``workflow.wiring.BATCH_JOBS`` logical ids, ASL Batch states) the
#: blockwise stages belong to.
DETECT = "Detect"
PUBLISH_TO_BOSS = "PublishToBoss"


@dataclass(frozen=True)
class Stage:
    """One stage of a blockwise run."""

    name: str  # ``step blocks --stage <name>``
    kind: StageKind
    workflow_step: str  # DETECT or PUBLISH_TO_BOSS
    does: str  # one line for the help and the docs


STAGES: tuple[Stage, ...] = (
    Stage("plan", "setup", DETECT, "plan.json + manifest.json (the Distributed Maps' items)"),
    Stage(
        "covariance",
        "map",
        DETECT,
        "read the block + halo from BOSS: the detector's sums and histograms",
    ),
    Stage("threshold", "reduce", DETECT, "global statistics and the detector's thresholds"),
    Stage("label", "map", DETECT, "the block's labels (NOMADS: components; PAIRS: seeded)"),
    Stage("stitch", "reduce", DETECT, "join labels across blocks: global ids, object geometry"),
    Stage("finalize", "map", DETECT, "ids + mask chunks of the result arrays, table partials"),
    Stage("merge", "reduce", DETECT, "synapses.csv, the arrays' metadata, manifest.json"),
    Stage("publish-prepare", "setup", PUBLISH_TO_BOSS, "check and create the output channels"),
    Stage("publish", "map", PUBLISH_TO_BOSS, "push the block's mask and ids to BOSS"),
    Stage(
        "publish-finish",
        "reduce",
        PUBLISH_TO_BOSS,
        "every block written: start BOSS's downsampling of the channels, report it",
    ),
)

STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
#: Stages that run once per block (they take ``--block``).
MAP_STAGES: tuple[str, ...] = tuple(s.name for s in STAGES if s.kind == "map")
_BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}


def find_stage(name: str) -> Stage | None:
    """The stage called ``name``, or ``None``."""
    return _BY_NAME.get(name)


def stages_of(workflow_step: str) -> tuple[Stage, ...]:
    """The stages of one workflow step, in order."""
    return tuple(s for s in STAGES if s.workflow_step == workflow_step)

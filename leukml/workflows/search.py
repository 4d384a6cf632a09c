"""A tracked search: a parent run with a tracked training run per trial, a dead worker's trial
continued from its checkpoint, the study summed up in the parent."""

from __future__ import annotations

import dataclasses
import re

from leukml.common import runschema as schema
from leukml.experiments.figures import study_summary
from leukml.experiments.search import SearchConfig, Study, run_search
from leukml.experiments.space import search_objective, searched_options
from leukml.tracking.tracker import Tracker
from leukml.training.config import TrainConfig
from leukml.training.sinks import ConsoleSink, FanoutSink
from leukml.training.trainer import check_split
from leukml.workflows.train import tracked_train


def tracked_search(
    tracker: Tracker, search: SearchConfig, console: ConsoleSink | None = None
) -> tuple[str, Study]:
    """A search as one parent run with a nested run per trial; returns (parent id, study).

    The parent logs the options its mode uses and its ``objective``, the study's best params, value
    and run (``best_run_id``), ``trials.csv`` and Optuna's figures; it is tagged with every parent
    run of the same study (one per worker).
    ``console`` also receives every trial's results and the search's progress lines. A split
    the trials cannot make is refused before any run is made.
    """
    check_split(search.base)
    name = search.name
    search = dataclasses.replace(search, study_name=name)
    tags = {schema.STUDY_NAME: name, schema.SEARCH_MODE: search.mode, schema.SEARCH_PARENT: "true"}
    with tracker.plan(f"search-{name}", tags, _search_params(search)) as parent:
        tracker.link_study(name)  # the other workers' parents of this study, and this one

        def run_trial(config: TrainConfig, tags, reporter, bases):
            observer = FanoutSink(reporter, console)
            # a dead worker's cell: continue its run from its checkpoint
            if schema.RETRY_OF in tags and (saved := tracker.retried_run(tags, config)) is not None:
                observer.say(f"trial {tags[schema.TRIAL_NUMBER]} continues run {saved} from its checkpoint")
                return tracked_train(tracker, resume=saved, tags=tags, observer=observer, bases=bases)
            return tracked_train(tracker, config, tags=tags, observer=observer, bases=bases)

        study = run_search(search, run_trial, console.say) if console else run_search(search, run_trial)
        tracker.log_study(study_summary(study))
        tracker.link_study(name)
    return parent, study


def _search_params(search: SearchConfig) -> dict:
    """A search parent's params: what it maximises, the options its mode uses, and the trials'
    shared options (``base.*``) but those each trial sets itself, which would read as if they acted."""
    params = {
        "mode": search.mode,
        "objective": search_objective(search),
        "archs": ",".join(search.archs),
        "optimizers": ",".join(search.optimizers),
        "study_name": search.study_name,
        "storage": _redact(search.storage_url),
    }
    if search.mode != "grid":  # a grid trains each cell once, unpruned, whatever these say
        params |= {"trials": search.trials, "pruner": search.pruner}
    searched = set(searched_options(search))
    return params | {
        f"{schema.BASE_PREFIX}{k}": v for k, v in search.base.as_dict().items() if k not in searched
    }


def _redact(url: str) -> str:
    """A storage URL without its password, fit for a param."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)

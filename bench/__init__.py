"""Benchmarks, run on demand (never in the test suite): `python -m bench`."""


def served_classifier(parser, name: str):
    """(task, registered version, backend opened as serving opens it) of classifier task `name`; a task that is not
    a classifier with an evaluation plan is a usage error of `parser`'s command, a task with no model prepared ends
    the command."""
    from config import settings
    from export.evaluate import open_version
    from runtime import registry
    from tasks import REGISTRY, TaskKind

    task = REGISTRY[name]
    if task.kind != TaskKind.CLASSIFY or task.evaluation is None:
        parser.error(f"{name} is not a classifier")
    s = settings()
    mv = registry.current(s.models_dir, name)
    if mv is None:
        raise SystemExit(f"no {name} model registered: run `python -m export prepare` first")
    return task, mv, open_version(s.models_dir, mv)

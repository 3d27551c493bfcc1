"""The MLflow side of the project: one run per trained predictor, a registered LightGBM Booster, aliases.

This is the only module that imports mlflow; every other module logs, registers and loads through it.

Layout
------
- one experiment per predictor, ``beast-<predictor>``; each `log_predictor` call is one run (params,
  held-out metrics, plots / spec / metrics JSON, tags incl. the LightGBM version and the git commit);
- the Booster is logged with the ``mlflow.lightgbm`` flavour (LightGBM text ``model.lgb``, never a
  pickle), with a signature inferred from a few feature rows and an explicit
  ``pip_requirements=["lightgbm==<version>"]`` (no dependency inference);
- it is registered as ``REGISTERED[predictor]``; the new version gets the alias ``challenger``, and
  ``champion`` too when the registered model has no champion yet (its first version). Moving
  ``champion`` afterwards is the gate's call (`set_alias`). Stages are deprecated and never used;
- extra boosters of the same fit (e.g. a p90 quantile Booster) are run artifacts
  ``boosters/<key>.txt`` (LightGBM text) and are loaded back by alias + key.

Where things are stored
-----------------------
`tracking_uri`: ``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<repo root>/mlflow.db`` (absolute path,
so it does not depend on the working directory). For a ``sqlite:`` store the artifacts of new
experiments go to ``mlruns/`` next to the database file; other stores use their own default.

Browse it with::

    uv run mlflow ui --backend-store-uri sqlite:///mlflow.db      # from the repo root

Loading never unpickles: `load_booster` downloads the model files and reads the LightGBM text file
with ``lgb.Booster(model_file=...)``.

Costs and caveats
-----------------
- Creating a fresh sqlite store runs MLflow's alembic migrations: ~8-12 s once. Opening an existing
  store costs ~2-3 s per process (schema check); after that a `log_predictor` call is ~0.2-0.6 s and a
  `load_booster` ~0.05 s for a small Booster.
- `log_predictor` / `load_booster` briefly point MLflow's process-global tracking URI at `uri` (the
  fluent API needs it) and restore it afterwards: not thread-safe, call them from one thread.
- Failures of the store (unreachable, cannot be created), an unknown predictor or a missing alias raise
  `BeastError` with one line naming what failed; MLflow's loggers are kept at WARNING.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

# Telemetry off unless the user opted in, before mlflow is imported (it reads this at import and per event).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import lightgbm as lgb  # noqa: E402
import mlflow  # noqa: E402
import mlflow.lightgbm
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model, infer_signature
from sqlalchemy.exc import SQLAlchemyError

from core.errors import BeastError
from core.files import PROJECT, file_lock, git_commit

REGISTERED: dict[str, str] = {"quality": "beast-quality", "cost": "beast-cost", "cache": "beast-cache"}
CHAMPION, CHALLENGER = "champion", "challenger"

MODEL_NAME = "model"  # name of the logged model inside each run (MLflow 3 `name=`, formerly `artifact_path=`)
BOOSTERS_DIR = "boosters"  # run-artifact folder of the extra boosters: boosters/<key>.txt
REGISTERED_BOOSTER_TAG = "beast.registered_booster"  # run tag: the booster key the registered model is
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_QUIET = {"mlflow": logging.WARNING, "alembic": logging.WARNING, "mlflow.utils.environment": logging.ERROR}
_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def tracking_uri(root: Path | None = None) -> str:
    """``$MLFLOW_TRACKING_URI`` if set (non-empty), else ``sqlite:///<root>/mlflow.db`` with an absolute path.

    `root` defaults to the repository root (the folder holding ``models/``).
    """
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return env
    return f"sqlite:///{(root or PROJECT).resolve() / 'mlflow.db'}"


@dataclass(frozen=True)
class RegisteredVersion:
    """One version of a registered predictor: its registry name, version number, source run and aliases."""

    name: str
    version: str
    run_id: str
    aliases: tuple[str, ...]


def _registered_name(predictor: str) -> str:
    try:
        return REGISTERED[predictor]
    except KeyError:
        raise BeastError(f"unknown predictor {predictor!r}: expected one of {', '.join(REGISTERED)}") from None


def _one_line(exc: BaseException) -> str:
    msg = exc.message if isinstance(exc, MlflowException) else str(exc)
    lines = [line.strip() for line in str(msg).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


@contextmanager
def _mlflow_errors(what: str) -> Iterator[None]:
    """Turn MLflow / store failures into one BeastError line naming `what` failed."""
    try:
        yield
    except BeastError:
        raise
    except MlflowException as exc:
        raise BeastError(f"mlflow: {what}: {_one_line(exc)}") from exc
    except (SQLAlchemyError, OSError) as exc:  # a store that cannot be reached or created
        raise BeastError(f"mlflow: {what}: {type(exc).__name__}: {_one_line(exc)}") from exc


def _quiet() -> None:
    """mlflow / alembic at WARNING; "Failed to resolve installed pip version" (uv venvs have no pip) hidden."""
    for name, level in _QUIET.items():
        logging.getLogger(name).setLevel(level)


_OPENED: set[str] = set()  # stores this process has opened (their schema exists)


def _client(uri: str | None) -> tuple[MlflowClient, str]:
    _quiet()
    uri = uri or tracking_uri()
    db = _sqlite_file(uri)
    with _mlflow_errors(f"open tracking store {uri}"):  # the client opens (and creates) the store eagerly
        init_lock = db.parent / f"{db.name}.init.lock" if db is not None else None
        if db is None or uri in _OPENED or (db.exists() and db.stat().st_size > 0 and not init_lock.exists()):
            return MlflowClient(tracking_uri=uri, registry_uri=uri), uri
        # two processes creating one new sqlite store at once race on its schema ("table ... already exists"):
        # stores created here keep their init lock beside them and are opened under it; a store made
        # elsewhere is opened as it is (a broken one is reported, nothing is created beside it)
        with file_lock(init_lock, "MLflow store initialisation"):
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            client.search_registered_models(max_results=1)  # the registry tables too
        _OPENED.add(uri)
        return client, uri


@contextmanager
def _fluent(uri: str) -> Iterator[None]:
    """Point MLflow's global (fluent) tracking + registry URI at `uri`, then put back exactly what was there.

    `mlflow.set_tracking_uri` also writes ``$MLFLOW_TRACKING_URI`` (and `set_registry_uri`
    ``$MLFLOW_REGISTRY_URI``), so the environment is snapshotted and restored too. The default
    tracking URI of MLflow 3 is ``sqlite:///mlflow.db`` relative to the *working directory*, so any
    MLflow call that reaches for the global URI must run inside this block.
    """
    saved_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", _PROGRESS_BAR)}
    os.environ[_PROGRESS_BAR] = "false"  # no tqdm bars on stderr when downloading artifacts
    saved_tracking = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    saved_registry = mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved_tracking)
        mlflow.set_registry_uri(saved_registry)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:`` store (absolute), None for an in-memory or any other store."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite" or not parsed.path or parsed.path == "/:memory:":
        return None
    return Path(parsed.path[1:] if uri.startswith("sqlite:////") else parsed.path.lstrip("/")).resolve()


def _artifact_location(uri: str) -> str | None:
    """``mlruns/`` beside a sqlite database file; None (the store's default) for any other store."""
    db = _sqlite_file(uri)
    return (db.parent / "mlruns").as_uri() if db is not None else None


def _experiment_id(client: MlflowClient, uri: str, predictor: str, suffix: str = "") -> str:
    name = f"beast-{predictor}{suffix}"
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage != "active":
            raise BeastError(f"mlflow: experiment {name!r} is deleted; restore it or remove it from {uri}")
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=_artifact_location(uri))


def _check_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise BeastError(f"booster key {key!r}: use letters, digits, '_', '.', '-' only")
    return key


def _artifact_dest(name: str) -> PurePosixPath:
    dest = PurePosixPath(name)
    if dest.is_absolute() or not dest.parts or ".." in dest.parts or dest.parts[0] == BOOSTERS_DIR:
        raise BeastError(f"artifact name {name!r}: must be a relative path, without '..', outside {BOOSTERS_DIR}/")
    return dest


def _stage_artifacts(staging: Path, extra_boosters: Mapping[str, lgb.Booster], artifacts: Mapping[str, Path]) -> None:
    """Copy every run artifact into `staging` under its final name, so one upload logs them all."""
    for key, booster in extra_boosters.items():
        (staging / BOOSTERS_DIR).mkdir(exist_ok=True)
        booster.save_model(str(staging / BOOSTERS_DIR / f"{_check_key(key)}.txt"))
    for name, src in artifacts.items():
        dest = staging.joinpath(*_artifact_dest(name).parts)
        if not Path(src).is_file():
            raise BeastError(f"{src}: artifact {name!r} is not a file")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)


def _as_version(mv: ModelVersion) -> RegisteredVersion:
    return RegisteredVersion(
        name=mv.name, version=str(mv.version), run_id=mv.run_id or "", aliases=tuple(sorted(mv.aliases or ()))
    )


def log_predictor(
    predictor: str,
    booster: lgb.Booster,
    input_example: pd.DataFrame,
    params: Mapping[str, object],
    metrics: Mapping[str, float],
    extra_boosters: Mapping[str, lgb.Booster] = {},  # noqa: B006 - read only
    artifacts: Mapping[str, Path] = {},  # noqa: B006 - read only
    tags: Mapping[str, str] = {},  # noqa: B006 - read only
    uri: str | None = None,
) -> RegisteredVersion:
    """Log one trained predictor as one run of experiment ``beast-<predictor>`` and register its Booster.

    `metrics` are held-out numbers (baselines prefixed, e.g. ``baseline.per_model_mean.auc``);
    `extra_boosters` become ``boosters/<key>.txt``; `artifacts` maps a run-artifact name (folders
    allowed, e.g. ``plots/calibration.png``) to a local file. The new version is ``challenger``, and
    also ``champion`` if the registered model has none yet. Returns the new version.
    """
    name = _registered_name(predictor)
    client, uri = _client(uri)
    all_tags = {"beast.predictor": predictor, "beast.lightgbm_version": lgb.__version__} | dict(tags)
    if (commit := git_commit(PROJECT)) is not None:
        all_tags.setdefault("mlflow.source.git.commit", commit)
    with tempfile.TemporaryDirectory(prefix="beast-mlflow-") as tmp:
        staging = Path(tmp)
        _stage_artifacts(staging, extra_boosters, artifacts)
        with _mlflow_errors(f"log {predictor} predictor to {uri}"):
            experiment_id = _experiment_id(client, uri, predictor)
            signature = infer_signature(input_example, booster.predict(input_example))
            with _fluent(uri), warnings.catch_warnings(), mlflow.start_run(experiment_id=experiment_id) as run:
                # mlflow.models.utils compares `df.columns == range(...)`, which pandas 3 warns about
                warnings.filterwarnings("ignore", message="Operation with range is deprecated")
                run_id = run.info.run_id
                client.log_batch(
                    run_id,
                    metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()],
                    params=[Param(k, str(v)) for k, v in params.items()],
                    tags=[RunTag(k, str(v)) for k, v in all_tags.items()],
                )
                if any(staging.iterdir()):
                    client.log_artifacts(run_id, str(staging))
                info = mlflow.lightgbm.log_model(
                    booster,
                    name=MODEL_NAME,
                    signature=signature,
                    input_example=input_example,
                    pip_requirements=[f"lightgbm=={lgb.__version__}"],
                )
        # create_model_version resolves the models:/<model_id> source through the *global* tracking URI
        # (MlflowClient() inside the sqlalchemy registry store), so registration runs under _fluent too.
        # Under the alias lock: two trainings registering at once would both create the registered model (the
        # second failing) and could leave `challenger` on the older of the two versions.
        with alias_lock(uri), _mlflow_errors(f"register {predictor} predictor as {name!r} in {uri}"), _fluent(uri):
            if not client.search_registered_models(filter_string=f"name = '{name}'"):
                client.create_registered_model(name, description=f"beast-mode {predictor} predictor (LightGBM)")
            mv = client.create_model_version(name, source=info.model_uri, run_id=run_id, model_id=info.model_id)
            _alias_new_version(client, name, mv.version)
            return _as_version(client.get_model_version(name, mv.version))


def _alias_new_version(client: MlflowClient, name: str, version: str) -> None:
    """A new version is the challenger, and the champion when there is none yet (a process killed before
    this leaves a version without aliases: harmless, the next registration moves past it)."""
    client.set_registered_model_alias(name, CHALLENGER, version)
    if CHAMPION not in client.get_registered_model(name).aliases:
        client.set_registered_model_alias(name, CHAMPION, version)


def optuna_callback(predictor: str, uri: str | None = None) -> Callable[[object, object], None]:
    """An Optuna study callback: each finished trial becomes one run of experiment ``beast-<predictor>-tuning``
    (its parameters, state, value and best iteration), so trials compare side by side in the MLflow UI."""
    _registered_name(predictor)
    client, uri = _client(uri)
    with _mlflow_errors(f"open tuning experiment for {predictor} in {uri}"):
        experiment_id = _experiment_id(client, uri, predictor, "-tuning")

    def log_trial(study: object, trial: object) -> None:
        with _mlflow_errors(f"log trial {trial.number} of {study.study_name} to {uri}"):
            run = client.create_run(
                experiment_id,
                run_name=f"{study.study_name}-trial-{trial.number}",
                tags={"beast.predictor": predictor, "optuna.study": study.study_name, "optuna.state": trial.state.name},
            )
            metrics = [Metric("value", float(trial.value), 0, 0)] if trial.value is not None else []
            metrics += [
                Metric("best_iteration", float(v), 0, 0) for k, v in trial.user_attrs.items() if k == "best_iteration"
            ]
            client.log_batch(
                run.info.run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in trial.params.items()]
            )
            client.set_terminated(run.info.run_id, "FINISHED" if trial.state.name == "COMPLETE" else "KILLED")

    return log_trial


def version_by_alias(predictor: str, alias: str, uri: str | None = None) -> RegisteredVersion | None:
    """The version `alias` points at, or None if the alias (or the registered model) does not exist."""
    name = _registered_name(predictor)
    client, uri = _client(uri)
    with _mlflow_errors(f"look up {name}@{alias} in {uri}"):
        if not client.search_registered_models(filter_string=f"name = '{name}'"):
            return None
        aliases = client.get_registered_model(name).aliases
        if alias not in aliases:
            return None
        return _as_version(client.get_model_version(name, str(aliases[alias])))


def set_alias(predictor: str, alias: str, version: str, uri: str | None = None) -> None:
    """Point `alias` (e.g. ``champion``) of the predictor's registered model at `version`."""
    name = _registered_name(predictor)
    client, uri = _client(uri)
    with _mlflow_errors(f"set {name}@{alias} -> version {version} in {uri}"):
        client.set_registered_model_alias(name, alias, str(version))


def load_booster(predictor: str, alias: str = CHAMPION, key: str | None = None, uri: str | None = None) -> lgb.Booster:
    """The Booster registered under `alias`, or with `key` its extra booster ``boosters/<key>.txt``.

    Only LightGBM text files are read (``lgb.Booster(model_file=...)``); nothing is unpickled.
    """
    found = version_by_alias(predictor, alias, uri)
    if found is None:
        raise BeastError(f"mlflow: {_registered_name(predictor)}@{alias}: no such alias in {uri or tracking_uri()}")
    client, uri = _client(uri)
    with tempfile.TemporaryDirectory(prefix="beast-mlflow-") as tmp:
        if key is not None:
            return _run_booster(client, uri, found, key, Path(tmp))
        return _model_booster(found, Path(tmp), uri)


def _run_booster(client: MlflowClient, uri: str, found: RegisteredVersion, key: str, tmp: Path) -> lgb.Booster:
    rel = f"{BOOSTERS_DIR}/{_check_key(key)}.txt"
    with (
        _mlflow_errors(f"download {rel} of {found.name} version {found.version} (run {found.run_id}) from {uri}"),
        _fluent(uri),
    ):
        path = Path(client.download_artifacts(found.run_id, rel, str(tmp)))
    return lgb.Booster(model_file=str(path))


def _download_version(found: RegisteredVersion, dst: Path, uri: str | None) -> Path:
    """The logged model files of exactly this version (by number: an alias moving meanwhile cannot mix versions)."""
    _, uri = _client(uri)
    with _mlflow_errors(f"download {found.name} version {found.version} from {uri}"), _fluent(uri):
        return Path(
            mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{found.name}/{found.version}", dst_path=str(dst))
        )


def _download_model(predictor: str, alias: str, dst: Path, uri: str | None = None) -> Path:
    """The logged model files of ``<registered name>@<alias>`` in `dst`; their folder."""
    found = version_by_alias(predictor, alias, uri)
    if found is None:
        raise BeastError(f"mlflow: {_registered_name(predictor)}@{alias}: no such alias in {uri or tracking_uri()}")
    return _download_version(found, dst, uri)


def _model_booster(found: RegisteredVersion, tmp: Path, uri: str | None) -> lgb.Booster:
    local = _download_version(found, tmp, uri)
    flavor = Model.load(str(local)).flavors.get("lightgbm", {})
    if flavor.get("model_class", "lightgbm.basic.Booster") != "lightgbm.basic.Booster":
        raise BeastError(
            f"mlflow: {found.name} version {found.version}: model class {flavor.get('model_class')!r} is not a Booster"
        )
    data = local / flavor.get("data", "model.lgb")
    if data.suffix != ".lgb" or not data.is_file():
        raise BeastError(f"mlflow: {found.name} version {found.version}: no LightGBM text model file in {local}")
    return lgb.Booster(model_file=str(data))


@dataclass(frozen=True)
class LoadedPredictor:
    """Everything one registered version needs to be served, all read from that version's own run."""

    version: RegisteredVersion
    side: Mapping[str, object]  # the run artifact <predictor>.json: feature names, categories, text spec
    boosters: Mapping[str, lgb.Booster]  # key -> booster; the registered model under its tagged key


def load_predictor(predictor: str, alias: str, uri: str | None = None) -> LoadedPredictor:
    """`predictor`@`alias` with its side JSON and every booster from the same run, so an export can never
    pair one version's trees with another version's fitted features (``data/models`` is not consulted)."""
    found = version_by_alias(predictor, alias, uri)
    if found is None:
        raise BeastError(f"mlflow: {_registered_name(predictor)}@{alias}: no such alias in {uri or tracking_uri()}")
    client, uri = _client(uri)
    what = f"{found.name} version {found.version} (run {found.run_id})"
    with tempfile.TemporaryDirectory(prefix="beast-mlflow-") as tmp, _mlflow_errors(f"read {what} from {uri}"):
        run = client.get_run(found.run_id)
        main_key = run.data.tags.get(REGISTERED_BOOSTER_TAG)
        with _fluent(uri):
            listed = [PurePosixPath(a.path).name for a in client.list_artifacts(found.run_id, BOOSTERS_DIR)]
            side_path = Path(tmp) / "side"
            side_path.mkdir()
            try:
                side_file = Path(client.download_artifacts(found.run_id, f"{predictor}.json", str(side_path)))
            except MlflowException:
                raise BeastError(
                    f"mlflow: {what} has no {predictor}.json artifact (logged before side files were); retrain {predictor}"
                ) from None
        if not main_key:
            raise BeastError(
                f"mlflow: {what} has no {REGISTERED_BOOSTER_TAG} tag naming its registered booster; retrain {predictor}"
            )
        try:
            side = json.loads(side_file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BeastError(f"mlflow: {what}: {predictor}.json is not JSON ({exc})") from None
        boosters = {main_key: _model_booster(found, Path(tmp) / "model", uri)}
        for name in sorted(listed):
            if name.endswith(".txt"):
                boosters[name[:-4]] = _run_booster(client, uri, found, name[:-4], Path(tmp))
    return LoadedPredictor(found, side, dict(sorted(boosters.items())))


# ------------------------------------------------------------------------------------------ alias moves

PREVIOUS = "previous"
GATE_EXPERIMENT = "beast-gate"
LOCK_TIMEOUT_S = 120.0


def _lock_path(uri: str) -> Path:
    """Beside a sqlite store (``<db>.lock``); for any other store, one per URI in the temp folder."""
    db = _sqlite_file(uri)
    if db is not None:
        return db.parent / f"{db.name}.lock"
    return Path(tempfile.gettempdir()) / f"beast-registry-{hashlib.sha256(uri.encode()).hexdigest()[:16]}.lock"


def alias_lock(uri: str | None = None, timeout_s: float = LOCK_TIMEOUT_S) -> AbstractContextManager[Path]:
    """Exclusive lock for a read-decide-move sequence of aliases (gate, rollback): two processes moving
    aliases of the same store at once cannot interleave; the second waits, then sees the first's result."""
    return file_lock(_lock_path(uri or tracking_uri()), "gate or rollback (MLflow alias move)", timeout_s)


@dataclass(frozen=True)
class AliasMove:
    """One predictor's aliases before and after a promotion or a rollback (version numbers, None = unset)."""

    predictor: str
    champion_before: str | None
    champion_after: str | None
    previous_before: str | None
    previous_after: str | None

    def describe(self) -> str:
        return f"{self.predictor}: {CHAMPION} {self.champion_before} -> {self.champion_after}, {PREVIOUS} {self.previous_before} -> {self.previous_after}"


def _version_of(predictor: str, alias: str, uri: str) -> str | None:
    found = version_by_alias(predictor, alias, uri)
    return found.version if found is not None else None


def _apply(move: AliasMove, uri: str) -> None:
    name = _registered_name(move.predictor)
    client, uri = _client(uri)
    with _mlflow_errors(f"move aliases of {name} in {uri}"):
        for alias, version in ((PREVIOUS, move.previous_after), (CHAMPION, move.champion_after)):
            if version is not None:
                client.set_registered_model_alias(name, alias, version)
            elif alias in client.get_registered_model(name).aliases:
                client.delete_registered_model_alias(name, alias)


# A move of several predictors' aliases plus the bundle export after it is one transaction: its planned
# moves are journalled beside the alias lock before the first alias changes and the journal is removed once
# the bundle matches. A process killed in between leaves the journal; the next mover (under the lock) puts
# every alias back where the journal says it was and re-exports the bundle (`pipelines.promote.recover`).


def _journal_path(uri: str) -> Path:
    return _lock_path(uri).with_suffix(".pending.json")


def begin_moves(moves: list[AliasMove], uri: str | None = None) -> None:
    """Journal `moves` (durably) before any of them is applied; call under `alias_lock`."""
    from dataclasses import asdict

    from core.files import write_atomic

    write_atomic(
        _journal_path(uri or tracking_uri()), (json.dumps({"moves": [asdict(m) for m in moves]}) + "\n").encode()
    )


def end_moves(uri: str | None = None) -> None:
    """The journalled moves are complete (or undone): forget them."""
    _journal_path(uri or tracking_uri()).unlink(missing_ok=True)


def pending_moves(uri: str | None = None) -> list[AliasMove]:
    """Moves journalled by a mover that did not finish (empty when none)."""
    path = _journal_path(uri or tracking_uri())
    if not path.exists():
        return []
    try:
        return [AliasMove(**m) for m in json.loads(path.read_text(encoding="utf-8"))["moves"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise BeastError(
            f"{path}: unreadable alias-move journal ({exc}); fix or remove it after checking the aliases"
        ) from None


def apply(moves: list[AliasMove], uri: str | None = None) -> None:
    """Set every alias of `moves` to its `after` version (absolute, so applying twice is harmless)."""
    for m in moves:
        _apply(m, uri or tracking_uri())


def undo(moves: list[AliasMove], uri: str | None = None) -> None:
    """Put every alias of `moves` back where it was (used when the export after a move fails)."""
    for m in moves:
        _apply(
            AliasMove(m.predictor, m.champion_after, m.champion_before, m.previous_after, m.previous_before),
            uri or tracking_uri(),
        )


def plan_promote(predictors: tuple[str, ...] = tuple(REGISTERED), uri: str | None = None) -> list[AliasMove]:
    """The moves of a promotion, nothing changed: ``champion`` -> the ``challenger`` version and ``previous``
    -> the old champion, for every predictor that has a challenger other than its champion."""
    uri = uri or tracking_uri()
    moves = []
    for p in predictors:
        challenger, champion, previous = (_version_of(p, a, uri) for a in (CHALLENGER, CHAMPION, PREVIOUS))
        if challenger is not None and challenger != champion:
            moves.append(AliasMove(p, champion, challenger, previous, champion if champion is not None else previous))
    return moves


def plan_rollback(predictors: tuple[str, ...] = tuple(REGISTERED), uri: str | None = None) -> list[AliasMove]:
    """The moves of a rollback, nothing changed: swap ``champion`` and ``previous`` for every predictor that
    has a ``previous`` (so a second rollback undoes the first)."""
    uri = uri or tracking_uri()
    moves = []
    for p in predictors:
        champion, previous = _version_of(p, CHAMPION, uri), _version_of(p, PREVIOUS, uri)
        if previous is not None and previous != champion:
            moves.append(AliasMove(p, champion, previous, previous, champion))
    return moves


def promote(predictors: tuple[str, ...] = tuple(REGISTERED), uri: str | None = None) -> list[AliasMove]:
    """Plan and apply a promotion (`plan_promote`). Call under `alias_lock`. Returns the moves made."""
    moves = plan_promote(predictors, uri)
    apply(moves, uri)
    return moves


def rollback(predictors: tuple[str, ...] = tuple(REGISTERED), uri: str | None = None) -> list[AliasMove]:
    """Plan and apply a rollback (`plan_rollback`). Call under `alias_lock`. Returns the moves made."""
    moves = plan_rollback(predictors, uri)
    apply(moves, uri)
    return moves


def log_gate_run(
    action: str,
    moves: list[AliasMove],
    artifacts: Mapping[str, Path],
    params: Mapping[str, object],
    metrics: Mapping[str, float],
    tags: Mapping[str, str] = {},
    uri: str | None = None,
) -> str:  # noqa: B006 - read only
    """One run of experiment ``beast-gate`` per gate decision or rollback: its parameters, test statistics,
    the alias moves (tags ``beast.alias.<predictor>``) and report files as artifacts. Returns the run id."""
    client, uri = _client(uri)
    with tempfile.TemporaryDirectory(prefix="beast-mlflow-") as tmp, _mlflow_errors(f"log {action} to {uri}"):
        staging = Path(tmp)
        _stage_artifacts(staging, {}, artifacts)
        experiment_id = _experiment_id(client, uri, GATE_EXPERIMENT.removeprefix("beast-"))
        run = client.create_run(
            experiment_id,
            run_name=action,
            tags={"beast.gate.action": action, **tags, **{f"beast.alias.{m.predictor}": m.describe() for m in moves}},
        )
        run_id = run.info.run_id
        client.log_batch(
            run_id,
            metrics=[
                Metric(k, float(v), 0, 0) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)
            ],
            params=[Param(k, str(v)) for k, v in params.items()],
        )
        if any(staging.iterdir()):
            with _fluent(uri):
                client.log_artifacts(run_id, str(staging))
        client.set_terminated(run_id, "FINISHED")
    return run_id


@dataclass(frozen=True)
class GateRun:
    """One logged gate decision or rollback, as `gate_runs` reads it back."""

    run_id: str
    action: str
    tags: Mapping[str, str]
    params: Mapping[str, str]
    metrics: Mapping[str, float]
    artifacts: tuple[str, ...]  # top-level artifact names


def gate_runs(uri: str | None = None) -> list[GateRun]:
    """The history of promotions, blocks and rollbacks, oldest first (what the MLflow UI shows as ``beast-gate``)."""
    client, uri = _client(uri)
    with _mlflow_errors(f"read {GATE_EXPERIMENT} runs from {uri}"):
        exp = client.get_experiment_by_name(GATE_EXPERIMENT)
        if exp is None:
            return []
        runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
        with _fluent(uri):
            return [
                GateRun(r.info.run_id, r.data.tags.get("beast.gate.action", ""), dict(r.data.tags), dict(r.data.params), dict(r.data.metrics),
                        tuple(sorted(a.path for a in client.list_artifacts(r.info.run_id))))
                for r in runs
            ]  # fmt: skip

"""Stage `export`: the registered champions (or local `beast train` files) as one language-neutral bundle.

The bundle is the contract a router in any language loads (layout and checks: `serving/bundle.py`).
`build_bundle` writes it from the files `beast train` leaves in ``data/models/<predictor>/`` (or from
boosters passed in); `export` looks each predictor's version up by alias in the MLflow registry (through
`models/registry.py`), loads exactly those boosters, and builds the bundle around them.

Writing is atomic: everything goes into a hidden temp folder next to `out`, is verified with the
router's own `serving.bundle.verify`, and is renamed into place; the ``.tar.gz`` beside it is written
through `core.files.atomic_path`. Models are LightGBM text + LightGBM JSON only; nothing is pickled.

Reproducible: same inputs, same bytes (bundle files, sorted JSON, a tar.gz with sorted members, mtime 0,
uid/gid 0 and a gzip header without time or name). The manifest's `created_at` and `source.git_commit` are the
only provenance that varies between runs; with `SOURCE_DATE_EPOCH` set (reproducible-builds.org: the DVC
`export` stage sets 0) `created_at` is that instant and the checkout's commit is left out (`null`): a commit
made after the run, such as the one holding its dvc.lock, must not change the bundle.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import lightgbm as lgb

from core.errors import BeastError
from core.files import PROJECT, WRITE_ERRNOS, atomic_path, exchange, file_lock, git_commit, gzip_writer, os_reason
from serving.bundle import (
    KIND,
    MANIFEST,
    PREDICTORS,
    SCHEMA_VERSION,
    SIGNATURE,
    BundleError,
    bundle_key,
    safe_relpath,
    sign,
    verify,
)
from serving.trees import dump_disagreement
from traces.prices import PriceTable, load_prices

PRICE_UNIT = "USD per 1M tokens"
SOURCE_DATE_EPOCH = "SOURCE_DATE_EPOCH"  # env: pins created_at and drops the git commit (reproducible build)
DEFAULT_TARGET_QUALITY = 0.5


@dataclass(frozen=True)
class ExportResult:
    path: Path  # the bundle folder
    archive: Path  # <path>.tar.gz
    manifest: Mapping[str, Any]
    files: int  # files in the bundle, manifest included
    bytes: int  # their total size


def archive_path(out: Path) -> Path:
    return out.parent / f"{out.name}.tar.gz"


def default_policy(
    candidates: Mapping[str, Mapping[str, float]], target_quality: float = DEFAULT_TARGET_QUALITY
) -> dict[str, Any]:
    """Threshold routing: the cheapest model predicted to reach `target_quality`; fallbacks cheapest first."""
    order = sorted(
        candidates, key=lambda m: (candidates[m]["input"] + candidates[m]["output"], candidates[m]["input"], m)
    )
    return {"name": "threshold", "args": {"target_quality": target_quality}, "fallback_order": order}


def trained_policy(
    sides: Mapping[str, Mapping[str, Any]], candidates: Mapping[str, Mapping[str, float]]
) -> dict[str, Any]:
    """The policy the quality training calibrated on held-out training prompts (side JSON `policy`: tradeoff at
    the lambda of the cheapest routing with >= 95% of the best model's quality), else `default_policy`."""
    calibrated = sides["quality"].get("policy") or {}
    policy = default_policy(candidates)
    if calibrated.get("policy") == "tradeoff" and isinstance(calibrated.get("lam"), (int, float)):
        policy |= {"name": "tradeoff", "args": {"lam": float(calibrated["lam"])}}
    return policy


def _dumps(obj: Any, indent: int | None = 1) -> bytes:
    try:
        return (json.dumps(obj, indent=indent, sort_keys=True, allow_nan=False) + "\n").encode()
    except ValueError as exc:  # NaN / inf: not JSON other languages can read
        raise BeastError(f"export: cannot write strict JSON ({exc})") from None


def _read_side(src: Path, predictor: str) -> dict[str, Any]:
    path = src / predictor / f"{predictor}.json"
    try:
        side = json.loads(path.read_text())
    except FileNotFoundError:
        raise BeastError(f"{path}: missing; run `beast train {predictor}` (or `make run`) first") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BeastError(f"{path}: cannot read side JSON ({exc})") from None
    if not isinstance(side, dict) or not isinstance(side.get("feature_names"), list):
        raise BeastError(f"{path}: side JSON needs a feature_names list")
    return side


def local_keys(src: Path, predictor: str) -> list[str]:
    """Booster keys `beast train` wrote for `predictor`: the stems of ``<src>/<predictor>/*.txt``."""
    keys = sorted(p.stem for p in (src / predictor).glob("*.txt"))
    if not keys:
        raise BeastError(
            f"{src / predictor}: no LightGBM boosters (*.txt); run `beast train {predictor}` (or `make run`) first"
        )
    return keys


def _load_local(src: Path, predictor: str) -> dict[str, lgb.Booster]:
    out = {}
    for key in local_keys(src, predictor):
        path = src / predictor / f"{key}.txt"
        try:
            out[key] = lgb.Booster(model_file=str(path))
        except lgb.basic.LightGBMError as exc:
            raise BeastError(
                f"{path}: not a LightGBM text model ({str(exc).splitlines()[0] if str(exc) else exc})"
            ) from None
    return out


def _candidates(
    sides: Mapping[str, Mapping[str, Any]], keys: list[str], prices: PriceTable
) -> dict[str, dict[str, float]]:
    """The models the quality predictor can score, with their current prices (USD per 1M tokens)."""
    quality = sides["quality"]
    if quality.get("heads") == "per_model":
        models = keys
    else:
        models = list(quality.get("feature_spec", {}).get("models", {}).get("categories", [])) or list(prices.models)
    out = {}
    for model in sorted(models):
        price = prices.current(model)
        if price is None:
            raise BeastError(
                f"export: candidate model {model!r} has no price in the price table; add it to the prices file"
            )
        out[model] = {"input": price.input, "output": price.output, "cached_input": price.cached_input}
    return out


def _check_policy(policy: Mapping[str, Any], candidates: Mapping[str, Any]) -> dict[str, Any]:
    policy = dict(policy)
    if not isinstance(policy.get("name"), str) or not isinstance(policy.get("args", {}), Mapping):
        raise BeastError(f"export: policy needs a name (str) and args (mapping), got {policy!r}")
    policy.setdefault("args", {})
    policy.setdefault("fallback_order", default_policy(candidates)["fallback_order"])
    unknown = [m for m in policy["fallback_order"] if m not in candidates]
    if unknown:
        raise BeastError(
            f"export: policy fallback_order names models that are not candidates: {', '.join(map(str, unknown))}"
        )
    return policy


def _version_entry(version: object | None, alias: str | None) -> dict[str, Any]:
    if version is None:
        return {"registered_name": None, "version": None, "run_id": None, "alias": None}
    return {"registered_name": version.name, "version": str(version.version), "run_id": version.run_id, "alias": alias}


def _stage(tmp: Path, rel: str, data: bytes, files: dict[str, dict[str, Any]]) -> None:
    path = tmp.joinpath(*PurePosixPath(rel).parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    files[rel] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _provenance() -> dict[str, Any]:
    """`created_at` (UTC, to the second) and `source`: now and the checkout's commit, or, with SOURCE_DATE_EPOCH
    set, that instant and no commit (the manifest is then a function of the exported files alone)."""
    pinned = os.environ.get(SOURCE_DATE_EPOCH, "").strip()
    if pinned:
        try:
            when = dt.datetime.fromtimestamp(int(pinned), dt.UTC)
        except (ValueError, OverflowError, OSError):
            raise BeastError(f"{SOURCE_DATE_EPOCH}={pinned!r}: expected whole seconds since 1970-01-01 UTC") from None
        commit = None
    else:
        when, commit = dt.datetime.now(dt.UTC), git_commit(PROJECT)
    return {
        "created_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": {"git_commit": commit, "lightgbm_version": lgb.__version__},
    }


def _write_tree(
    tmp: Path,
    sides: Mapping[str, Mapping[str, Any]],
    prices: PriceTable,
    versions: Mapping[str, object] | None,
    policy: Mapping[str, Any],
    boosters: Mapping[str, Mapping[str, lgb.Booster]],
    alias: str | None,
) -> dict[str, Any]:
    """Every bundle file into `tmp`; returns the manifest (also written)."""
    spec = sides["quality"].get("feature_spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("version"), str):
        raise BeastError("export: the quality side JSON has no feature_spec with a version; retrain quality")
    candidates = _candidates(sides, list(boosters["quality"]), prices)
    policy = _check_policy(policy, candidates)
    files: dict[str, dict[str, Any]] = {}
    predictors = {}
    for p in PREDICTORS:
        entry = _version_entry((versions or {}).get(p), alias)
        models, trees = {}, {}
        for key, booster in boosters[p].items():
            if safe_relpath(key) is None or "/" in key or not key:
                raise BeastError(f"export: {p} booster key {key!r} is not a plain file name")
            if booster.feature_name() != sides[p]["feature_names"]:
                raise BeastError(
                    f"export: {p} booster {key!r} features {booster.feature_name()} do not match {p}.json feature_names {sides[p]['feature_names']}: side JSON and boosters are from different fits"
                )
            text, dump = booster.model_to_string(), booster.dump_model()
            if len(dump["tree_info"]) != booster.num_trees():
                raise BeastError(
                    f"export: {p} booster {key!r}: JSON dump has {len(dump['tree_info'])} trees, the model {booster.num_trees()}"
                )
            if (problem := dump_disagreement(dump, booster.predict)) is not None:
                raise BeastError(
                    f"export: {p} booster {key!r}: its JSON dump (what routers in other languages read) does not predict what the model does: {problem}"
                )
            models[key] = {"text": f"models/{p}/{key}.txt", "json": f"models/{p}/{key}.json"}
            trees[key] = booster.num_trees()
            _stage(tmp, models[key]["text"], text.encode(), files)
            _stage(tmp, models[key]["json"], _dumps(dump, indent=None), files)
        _stage(tmp, f"{p}.json", _dumps(sides[p]), files)
        extra = {"heads": sides[p]["heads"]} if "heads" in sides[p] else {}
        extra |= {"horizon_s": sides[p]["horizon_s"]} if "horizon_s" in sides[p] else {}
        predictors[p] = entry | {"keys": list(models), "num_trees": trees, "side": f"{p}.json", "files": models} | extra
    _stage(
        tmp, "feature_spec.json", json.dumps(spec, sort_keys=True).encode(), files
    )  # byte-identical to FeatureSpec.to_json()
    if spec.get("embed"):  # the projected embedding table and the tokenizer, checked against the spec's hashes
        from features.embed import EmbedSpec

        for rel, data in EmbedSpec.from_dict(spec["embed"]).bundle_files().items():
            _stage(tmp, rel, data, files)
    _stage(tmp, "policy.json", _dumps(policy), files)
    manifest = {
        "kind": KIND,
        "schema_version": SCHEMA_VERSION,
        **_provenance(),
        "predictors": predictors,
        "candidates": candidates,
        "price_unit": PRICE_UNIT,
        "feature_spec_version": spec["version"],
        "feature_spec": "feature_spec.json",
        "policy": policy,
        "files": dict(sorted(files.items())),
    }
    (tmp / MANIFEST).write_bytes(_dumps(manifest))
    return manifest


def _tar(folder: Path, dest: Path) -> None:
    """`folder`'s files as a deterministic tar.gz (sorted, mtime 0, root-owned, 0644): members relative to it."""
    with (
        open(dest, "wb") as raw,
        gzip_writer(raw) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            data = path.read_bytes()
            info = tarfile.TarInfo(path.relative_to(folder).as_posix())
            info.size, info.mtime, info.mode, info.uid, info.gid = len(data), 0, 0o644, 0, 0
            tar.addfile(info, io.BytesIO(data))


def _replace(tmp: Path, out: Path, overwrite: bool) -> None:
    """Put `tmp` in place of `out`: a rename, or over an existing bundle an atomic exchange of the two folders
    (where the kernel cannot, the old one is renamed aside first and removed afterwards)."""
    if not out.exists():
        os.rename(tmp, out)
        return
    if not overwrite:
        raise BeastError(f"{out}: already exists; pass overwrite=True to replace it")
    if not out.is_dir() or not (out / MANIFEST).is_file():
        raise BeastError(f"{out}: exists and is not a bundle folder (no {MANIFEST}); refusing to replace it")
    try:
        exchange(tmp, out)  # atomic: `out` is never missing; `tmp` now holds the old bundle (removed by the caller)
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))  # fallback: a short gap
    os.rename(out, aside / "bundle")
    try:
        os.rename(tmp, out)
    except OSError:
        os.rename(aside / "bundle", out)
        raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)


SAMPLE_PROMPTS = PROJECT / "data" / "sample" / "alpaca_eval.parquet"
CONFORMANCE = "conformance.jsonl"


def sample_requests(n_prompts: int = 200) -> list[dict[str, object]]:
    """Conformance requests: the first `n_prompts` distinct AlpacaEval prompts (real text) plus edge cases."""
    import pandas as pd

    from serving.conformance import default_requests

    if not SAMPLE_PROMPTS.exists():
        return default_requests([], [])
    rows = pd.read_parquet(SAMPLE_PROMPTS, columns=["prompt", "task"]).drop_duplicates("prompt").head(n_prompts)
    return default_requests(rows["prompt"].tolist(), rows["task"].tolist())


def _add_conformance(tmp: Path, manifest: dict[str, Any], requests: Sequence[Mapping[str, object]]) -> None:
    """Record the reference router's answers on the staged bundle, then list them in the manifest."""
    from serving.conformance import dumps, record
    from serving.router import Router

    router = Router(verify(tmp))
    files = dict(manifest["files"])
    _stage(tmp, CONFORMANCE, dumps(record(router, r) for r in requests), files)
    manifest["files"] = dict(sorted(files.items()))
    manifest["conformance"] = {"file": CONFORMANCE, "vectors": len(requests)}
    (tmp / MANIFEST).write_bytes(_dumps(manifest))


def build_bundle(
    src: Path,
    prices: PriceTable,
    out: Path,
    versions: Mapping[str, object] | None,
    policy: Mapping[str, Any],
    **kwargs: Any,
) -> ExportResult:
    """`_build_bundle` under the export lock (of `out`'s folder), after removing what a killed export left beside it
    (its hidden staging folder, archive temp or set-aside old bundle: no other writer can own them now)."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(out.parent, f"export into {out.parent}"):
            for stale in sorted({*out.parent.glob(f".{out.name}.*.tmp"), *out.parent.glob(f".{out.name}.old-*")}):
                shutil.rmtree(stale) if stale.is_dir() and not stale.is_symlink() else stale.unlink()
            return _build_bundle(src, prices, out, versions, policy, **kwargs)
    except OSError as exc:  # the lock or a leftover in a folder we may not write: nothing was changed
        if exc.errno not in WRITE_ERRNOS:
            raise
        raise BeastError(
            f"{out}: cannot write the bundle ({os_reason(exc)}{f': {exc.filename}' if exc.filename else ''})"
        ) from None


def _build_bundle(
    src: Path,
    prices: PriceTable,
    out: Path,
    versions: Mapping[str, object] | None,
    policy: Mapping[str, Any],
    *,
    boosters: Mapping[str, Mapping[str, lgb.Booster]] | None = None,
    alias: str | None = None,
    overwrite: bool = False,
    requests: Sequence[Mapping[str, object]] | None = None,
    sides: Mapping[str, Mapping[str, Any]] | None = None,
) -> ExportResult:
    """Write the bundle folder `out` and `out`.tar.gz from `src` (``data/models``: side JSON + boosters).

    `versions` maps predictor -> `registry.RegisteredVersion` (None: unregistered local files);
    `boosters` (predictor -> key -> Booster) and `sides` (predictor -> side JSON) replace the files in
    `src` when given. `out` must not exist unless `overwrite`; nothing is left half-written on failure.
    """
    src, out = Path(src), Path(out)
    if out.exists() and not overwrite:
        raise BeastError(f"{out}: already exists; pass overwrite=True to replace it")
    archive = archive_path(out)
    boosters = boosters if boosters is not None else {p: _load_local(src, p) for p in PREDICTORS}
    sides = sides if sides is not None else {p: _read_side(src, p) for p in PREDICTORS}
    missing = [p for p in PREDICTORS if not boosters.get(p)]
    if missing:
        raise BeastError(f"export: no boosters for {', '.join(missing)}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise BeastError(f"{out}: cannot write the bundle ({os_reason(exc)})") from None
    try:
        manifest = _write_tree(tmp, sides, prices, versions, policy, boosters, alias)
        try:
            requests = sample_requests() if requests is None else requests
            if requests:  # an empty list (format tests with stand-in models) records no vectors
                _add_conformance(tmp, manifest, requests)
            key = bundle_key()
            if key is not None:  # BEAST_BUNDLE_KEY set: routers holding the key load only what we signed
                sign(tmp, key)
            verify(tmp, key)
        except BundleError as exc:
            raise BeastError(f"export: the bundle just written does not verify: {exc}") from None
        extra = [p for p in (tmp / MANIFEST, tmp / SIGNATURE) if p.is_file()]
        count, size = (
            len(manifest["files"]) + len(extra),
            sum(f["bytes"] for f in manifest["files"].values()) + sum(p.stat().st_size for p in extra),
        )
        with atomic_path(archive) as tmp_archive:
            _tar(tmp, tmp_archive)
            _replace(tmp, out, overwrite)
    except OSError as exc:  # disk full, read-only, ...: the staging folder goes, an existing bundle stays
        if exc.errno not in WRITE_ERRNOS:
            raise
        raise BeastError(
            f"{out}: cannot write the bundle ({os_reason(exc)}{f': {exc.filename}' if exc.filename else ''})"
        ) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return ExportResult(out, archive, manifest, count, size)


def export(
    alias: str,
    out: Path,
    prices_file: Path = Path("data/prices.yaml"),
    uri: str | None = None,
    policy: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    requests: Sequence[Mapping[str, object]] | None = None,
) -> ExportResult:
    """The bundle of each predictor's version `alias` (e.g. ``champion``) in the MLflow registry.

    Boosters and side JSON both come from each version's own run (what is registered is what ships,
    with the features it was fitted with); ``data/models`` is not read.
    """
    from models import registry

    loaded = {p: registry.load_predictor(p, alias, uri) for p in PREDICTORS}
    sides = {p: dict(v.side) for p, v in loaded.items()}
    boosters = {p: v.boosters for p, v in loaded.items()}
    prices = load_prices(prices_file)
    if policy is None:
        policy = trained_policy(sides, _candidates(sides, list(boosters["quality"]), prices))
    versions = {p: v.version for p, v in loaded.items()}
    return build_bundle(
        Path("."),
        prices,
        out,
        versions,
        policy,
        boosters=boosters,
        alias=alias,
        overwrite=overwrite,
        requests=requests,
        sides=sides,
    )


def export_local(
    models_dir: Path, out: Path, prices_file: Path = Path("data/prices.yaml"), overwrite: bool = False
) -> ExportResult:
    """The bundle of the files one `beast train` run left in `models_dir` (boosters and side JSON of the same
    fits, unregistered: no MLflow version in the manifest). The DVC `export` stage; serving uses `export`."""
    prices = load_prices(prices_file)
    sides = {p: _read_side(models_dir, p) for p in PREDICTORS}
    policy = trained_policy(sides, _candidates(sides, local_keys(models_dir, "quality"), prices))
    return build_bundle(models_dir, prices, out, None, policy, overwrite=overwrite)

"""Export bundle: models/export.py writes it, serving/bundle.py verifies and extracts it (tamper, tar escapes, no pickle)."""

from __future__ import annotations

import ast
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from conftest import BOOSTER_KEYS, ROOT, SIDES
from conftest import fake_booster as _booster
from conftest import fake_boosters as _boosters
from conftest import register_fake as _register

from core.errors import BeastError
from models.export import ExportResult, build_bundle, default_policy, export
from serving.bundle import Bundle, BundleError, extract, verify
from traces.prices import parse_prices

PRICES = parse_prices(
    {
        "models": {
            "big": {"input": 10.0, "output": 30.0},
            "small": {"input": 0.1, "output": 0.2, "cached_input": 0.05},
            "mid": {"input": 1.0, "output": 2.0},
        }
    },
    "test",
)


def _write_models_dir(folder: Path, boosters: dict[str, dict[str, lgb.Booster]]) -> Path:
    """The layout `beast train` writes: <predictor>/<key>.txt and <predictor>/<predictor>.json."""
    for p, by_key in boosters.items():
        (folder / p).mkdir(parents=True)
        for key, b in by_key.items():
            (folder / p / f"{key}.txt").write_text(b.model_to_string())
        (folder / p / f"{p}.json").write_text(json.dumps(SIDES[p], indent=1, sort_keys=True))
    return folder


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_models_dir(tmp_path_factory.mktemp("models"), _boosters())


@pytest.fixture
def built(models_dir: Path, tmp_path: Path) -> ExportResult:
    return build_bundle(
        models_dir,
        PRICES,
        tmp_path / "bundle",
        None,
        {"name": "threshold", "args": {"target_quality": 0.5}},
        requests=(),
    )


def _all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_build_writes_a_verified_bundle(built: ExportResult) -> None:
    bundle = verify(built.path)
    m = bundle.manifest
    assert (m["kind"], m["schema_version"], m["feature_spec_version"]) == ("beast-bundle", "1", "0123456789abcdef")
    assert m["created_at"].endswith("Z") and len(m["created_at"]) == 20
    assert m["candidates"] == {
        "big": {"input": 10.0, "output": 30.0, "cached_input": 10.0},
        "small": {"input": 0.1, "output": 0.2, "cached_input": 0.05},
    }
    assert (
        m["policy"]
        == {"name": "threshold", "args": {"target_quality": 0.5}, "fallback_order": ["small", "big"]}
        == bundle.policy()
    )
    assert {p: e["keys"] for p, e in m["predictors"].items()} == BOOSTER_KEYS
    assert m["predictors"]["quality"]["heads"] == "per_model" and m["predictors"]["cache"]["horizon_s"] == 300.0
    assert m["predictors"]["cost"]["registered_name"] is None
    expected = {f"models/{p}/{k}.{ext}" for p, keys in BOOSTER_KEYS.items() for k in keys for ext in ("txt", "json")}
    expected |= {"quality.json", "cost.json", "cache.json", "feature_spec.json", "policy.json"}
    assert set(m["files"]) == expected and _all_files(built.path) == sorted(expected | {"manifest.json"})
    assert built.files == 18 and built.bytes == sum(p.stat().st_size for p in built.path.rglob("*") if p.is_file())
    assert bundle.side("cost") == SIDES["cost"] and bundle.feature_spec() == SIDES["quality"]["feature_spec"]
    assert built.archive == built.path.parent / "bundle.tar.gz" and built.archive.is_file()
    assert [p.name for p in built.path.parent.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_bundle_models_predict_like_the_originals(built: ExportResult, models_dir: Path) -> None:
    bundle = verify(built.path)
    X = _booster(0)[1]
    for p, keys in BOOSTER_KEYS.items():
        for key in keys:
            original = lgb.Booster(model_file=str(models_dir / p / f"{key}.txt"))
            loaded = lgb.Booster(model_str=bundle.model_text(p, key))
            np.testing.assert_array_equal(loaded.predict(X), original.predict(X))
            assert (
                len(bundle.model_json(p, key)["tree_info"])
                == loaded.num_trees()
                == bundle.predictors[p]["num_trees"][key]
            )


def test_json_dump_has_as_many_trees_as_the_text_model(built: ExportResult) -> None:
    for rel in (r for r in verify(built.path).files if r.startswith("models/") and r.endswith(".txt")):
        text = (built.path / rel).read_text()
        dump = json.loads((built.path / rel).with_suffix(".json").read_text())
        assert len(dump["tree_info"]) == text.count("\nTree=") == lgb.Booster(model_str=text).num_trees() > 0


def test_flipped_byte_is_tampered(built: ExportResult) -> None:
    path = built.path / "models" / "cost" / "p90.txt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"models/cost/p90\.txt: tampered: sha256 mismatch"):
        verify(built.path)


def test_truncated_file_is_a_size_mismatch(built: ExportResult) -> None:
    path = built.path / "policy.json"
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(BundleError, match=r"policy\.json: tampered: size mismatch"):
        verify(built.path)


def test_deleted_file_is_missing(built: ExportResult) -> None:
    (built.path / "models" / "quality" / "small.json").unlink()
    with pytest.raises(BundleError, match=r"models/quality/small\.json: missing"):
        verify(built.path)


@pytest.mark.parametrize("rel", ["extra.txt", "models/quality/evil.txt"])
def test_added_file_is_unexpected(built: ExportResult, rel: str) -> None:
    (built.path / rel).write_text("x")
    with pytest.raises(BundleError, match=rf"{rel}: unexpected file"):
        verify(built.path)


def test_symlink_in_place_of_a_file_is_refused(built: ExportResult) -> None:
    target = built.path / "cache.json"
    os.replace(target, built.path.parent / "cache.json")
    target.symlink_to(built.path.parent / "cache.json")
    with pytest.raises(BundleError, match=r"cache\.json: not a regular file"):
        verify(built.path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m | {"schema_version": "2"}, "unknown schema_version '2'"),
        (lambda m: {k: v for k, v in m.items() if k != "files"}, "field 'files' missing"),
        (lambda m: m | {"files": m["files"] | {"../x": {"sha256": "0" * 64, "bytes": 1}}}, "bad path"),
        (
            lambda m: m | {"files": {k: v for k, v in m["files"].items() if k != "policy.json"}},
            "policy.json: named by manifest.json but not listed",
        ),
    ],
)
def test_bad_manifest_is_refused(built: ExportResult, edit, message: str) -> None:
    path = built.path / "manifest.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    with pytest.raises(BundleError, match=message):
        verify(built.path)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="manifest.json: missing"):
        verify(tmp_path)


def test_out_exists_refused_unless_overwrite(built: ExportResult, models_dir: Path) -> None:
    policy = default_policy({"small": {"input": 0.1, "output": 0.2}, "big": {"input": 10.0, "output": 30.0}}, 0.7)
    with pytest.raises(BeastError, match="already exists; pass overwrite=True"):
        build_bundle(models_dir, PRICES, built.path, None, policy, requests=())
    again = build_bundle(models_dir, PRICES, built.path, None, policy, overwrite=True, requests=())
    assert verify(again.path).policy()["args"] == {"target_quality": 0.7}
    assert sorted(p.name for p in built.path.parent.iterdir()) == ["bundle", "bundle.tar.gz"]
    not_a_bundle = built.path.parent / "other"
    not_a_bundle.mkdir()
    with pytest.raises(BeastError, match="not a bundle folder"):
        build_bundle(models_dir, PRICES, not_a_bundle, None, policy, overwrite=True, requests=())
    assert list(not_a_bundle.iterdir()) == []


def test_side_json_from_another_fit_is_refused(models_dir: Path, tmp_path: Path) -> None:
    boosters = _boosters()
    boosters["cache"]["model"] = lgb.train(
        {"objective": "binary", "verbosity": -1},
        lgb.Dataset(pd.DataFrame({"a": np.arange(50.0)}), label=np.arange(50) % 2),
        2,
    )
    with pytest.raises(BeastError, match="cache booster 'model' features"):
        build_bundle(models_dir, PRICES, tmp_path / "b", None, {"name": "threshold"}, boosters=boosters, requests=())
    assert list(tmp_path.iterdir()) == []


def test_tar_round_trip(built: ExportResult, tmp_path: Path) -> None:
    with tarfile.open(built.archive, "r:gz") as tar:
        assert all(m.isfile() and m.mtime == 0 and m.uid == 0 for m in tar.getmembers())
    bundle = verify(extract(built.archive, tmp_path / "x"))
    assert isinstance(bundle, Bundle) and bundle.manifest == verify(built.path).manifest
    assert _all_files(tmp_path / "x") == _all_files(built.path)
    with pytest.raises(BundleError, match="already exists"):
        extract(built.archive, tmp_path / "x")


def _evil_archive(path: Path, built: ExportResult, evil: tarfile.TarInfo, payload: bytes = b"evil") -> Path:
    """The good bundle's members plus one crafted member."""
    with tarfile.open(built.archive, "r:gz") as src, tarfile.open(path, "w:gz") as dst:
        for m in src.getmembers():
            dst.addfile(m, src.extractfile(m))
        dst.addfile(evil, io.BytesIO(payload) if evil.isfile() else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", size: int = 4) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, size if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (lambda t: _member("../evil-" + t), "unsafe path"),
        (lambda t: _member("models/../../evil-" + t), "unsafe path"),
        (lambda t: _member(f"/tmp/beast-evil-{t}"), "unsafe path"),
        (lambda t: _member("link", tarfile.SYMTYPE, f"/tmp/beast-evil-{t}"), "not a regular file"),
        (lambda t: _member("hard", tarfile.LNKTYPE, "/etc/passwd"), "not a regular file"),
        (lambda t: _member("dev", tarfile.CHRTYPE), "not a regular file"),
    ],
)
def test_malicious_members_are_refused(built: ExportResult, tmp_path: Path, member, message: str) -> None:
    token = uuid.uuid4().hex
    work = tmp_path / "work"
    work.mkdir()
    archive = _evil_archive(tmp_path / "evil.tar.gz", built, member(token))
    with pytest.raises(BundleError, match=message):
        extract(archive, work / "dest")
    assert list(work.iterdir()) == []  # nothing written, not even dest
    assert not Path(f"/tmp/beast-evil-{token}").exists() and not (tmp_path / f"evil-{token}").exists()


def test_extra_member_fails_verify_and_leaves_nothing(built: ExportResult, tmp_path: Path) -> None:
    archive = _evil_archive(tmp_path / "extra.tar.gz", built, _member("models/extra.txt"))
    with pytest.raises(BundleError, match="models/extra.txt: unexpected file"):
        extract(archive, tmp_path / "work" / "dest")
    assert list((tmp_path / "work").iterdir()) == []


def test_extract_refuses_more_than_max_bytes(built: ExportResult, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="exceed 1000 bytes"):
        extract(built.archive, tmp_path / "dest", max_bytes=1000)
    assert not (tmp_path / "dest").exists()


def test_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "x.tar.gz").write_bytes(b"not gzip")
    with pytest.raises(BundleError, match="cannot extract"):
        extract(tmp_path / "x.tar.gz", tmp_path / "dest")


def test_no_pickle_in_the_bundle(built: ExportResult, tmp_path: Path) -> None:
    root = extract(built.archive, tmp_path / "x")
    for path in [*root.rglob("*"), *built.path.rglob("*")]:
        if path.is_file():
            head = path.read_bytes()[:2]
            assert not (len(head) == 2 and head[0] == 0x80 and head[1] <= 0x05), f"{path}: pickle header"
            assert path.suffix not in (".pkl", ".pickle", ".joblib"), path


def test_bundle_reader_is_stdlib_only() -> None:
    """The bundle reader is the language-neutral contract: nothing beyond the standard library."""
    banned = {"mlflow", "optuna", "prefect", "lightgbm", "models", "sklearn", "pandas", "pickle"}
    imported = set()
    for node in ast.walk(ast.parse((ROOT / "serving" / "bundle.py").read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported & banned == set(), f"bundle.py imports {imported & banned}"


def test_router_runtime_loads_no_training_stack() -> None:
    """Importing the router (with everything it imports, transitively) loads no MLflow, Optuna, Prefect
    or training module: it runs from the bundle alone (LightGBM only to evaluate boosters)."""
    code = "import sys, serving.router; print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in {'mlflow', 'optuna', 'prefect', 'models'})))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_export_from_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Register one predictor version each in a throwaway sqlite store, then export the champions."""
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(BeastError, match="beast-quality@champion: no such alias"):
        export("champion", tmp_path / "none", ROOT / "data" / "prices.yaml", requests=())
    boosters = _boosters()
    versions = _register(tmp_path, boosters, SIDES)
    prices_file = tmp_path / "prices.yaml"
    prices_file.write_text("models:\n  big: {input: 10.0, output: 30.0}\n  small: {input: 0.1, output: 0.2}\n")
    result = export("champion", tmp_path / "bundle", prices_file, requests=())
    bundle = verify(result.path)
    for p, v in versions.items():
        entry = bundle.predictors[p]
        assert (entry["registered_name"], entry["version"], entry["run_id"], entry["alias"]) == (
            v.name,
            v.version,
            v.run_id,
            "champion",
        )
        assert bundle.side(p) == SIDES[p]
        X = _booster(0)[1]
        for key, b in boosters[p].items():
            np.testing.assert_array_equal(lgb.Booster(model_str=bundle.model_text(p, key)).predict(X), b.predict(X))
    assert bundle.policy()["fallback_order"] == ["small", "big"]
    assert verify(extract(result.archive, tmp_path / "x")).manifest == bundle.manifest


def test_export_takes_side_json_and_keys_from_the_exported_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A newer training (challenger) with other fitted features and other heads must not leak into the
    champion's bundle: each version ships with its own run's side JSON and booster keys."""
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    first = _register(tmp_path, _boosters(), SIDES)
    newer_sides = {p: dict(side) for p, side in SIDES.items()}
    newer_sides["quality"] = dict(
        SIDES["quality"], feature_spec=dict(SIDES["quality"]["feature_spec"], version="fedcba9876543210")
    )
    newer_sides["cost"] = dict(SIDES["cost"], p90_shift={"": 9.9})
    newer = _boosters() | {"quality": {"big": _booster(7)[0], "small": _booster(8)[0], "mid": _booster(9)[0]}}
    second = _register(tmp_path, newer, newer_sides)
    prices_file = tmp_path / "prices.yaml"
    prices_file.write_text(
        "models:\n  big: {input: 10.0, output: 30.0}\n  small: {input: 0.1, output: 0.2}\n  mid: {input: 1.0, output: 2.0}\n"
    )
    champion = verify(export("champion", tmp_path / "champion", prices_file, requests=()).path)
    challenger = verify(export("challenger", tmp_path / "challenger", prices_file, requests=()).path)
    assert champion.manifest["feature_spec_version"] == "0123456789abcdef" and champion.side("cost") == SIDES["cost"]
    assert (
        champion.predictors["quality"]["keys"] == ["big", "small"]
        and champion.predictors["quality"]["version"] == first["quality"].version
    )
    assert challenger.manifest["feature_spec_version"] == "fedcba9876543210" and challenger.side("cost")[
        "p90_shift"
    ] == {"": 9.9}
    assert (
        challenger.predictors["quality"]["keys"] == ["big", "mid", "small"]
        and challenger.predictors["quality"]["version"] == second["quality"].version
    )


@pytest.mark.parametrize(
    ("prices", "policy", "message"),
    [
        (
            PRICES,
            {"name": "threshold", "fallback_order": ["small", "gpt-9"]},
            "fallback_order names models that are not candidates: gpt-9",
        ),
        (PRICES, {"args": {}}, "policy needs a name"),
        (
            parse_prices({"models": {"small": {"input": 0.1, "output": 0.2}}}, "test"),
            {"name": "threshold"},
            "candidate model 'big' has no price",
        ),
    ],
)
def test_bad_policy_or_prices_are_refused(models_dir: Path, tmp_path: Path, prices, policy, message: str) -> None:
    with pytest.raises(BeastError, match=message):
        build_bundle(models_dir, prices, tmp_path / "b", None, policy, requests=())
    assert list(tmp_path.iterdir()) == []


def test_missing_models_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BeastError, match=r"quality: no LightGBM boosters .*run `beast train quality`"):
        build_bundle(tmp_path / "nothing", PRICES, tmp_path / "b", None, {"name": "threshold"}, requests=())


# ------------------------------------------------------------------------------------ signature (HMAC)

KEY = "0123456789abcdef-test-key"


def test_export_signs_when_the_key_is_set_and_verify_checks_it(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.bundle import KEY_ENV, SIGNATURE, bundle_key, load

    monkeypatch.setenv(KEY_ENV, KEY)
    built = build_bundle(
        models_dir,
        PRICES,
        tmp_path / "bundle",
        None,
        {"name": "threshold", "args": {"target_quality": 0.5}},
        requests=(),
    )
    doc = json.loads((built.path / SIGNATURE).read_text())
    raw = (built.path / "manifest.json").read_bytes()
    import hashlib
    import hmac

    assert doc == {
        "kind": "beast-bundle-signature",
        "algorithm": "hmac-sha256",
        "manifest_sha256": hashlib.sha256(raw).hexdigest(),
        "hmac": hmac.new(KEY.encode(), raw, "sha256").hexdigest(),
    }
    assert built.files == 19 and SIGNATURE not in built.manifest["files"]
    assert verify(built.path, bundle_key()).manifest == built.manifest
    assert verify(built.path).manifest == built.manifest  # without a key the signature is allowed, not checked
    with pytest.raises(BundleError, match=f"{SIGNATURE}: signature mismatch: signed with another key"):
        verify(built.path, b"another key, 16+ bytes")
    assert load(built.archive, tmp_path / "x", key=bundle_key()).manifest == built.manifest  # the archive carries it

    # the manifest changed after signing (files re-listed consistently): the signature no longer holds
    copy = tmp_path / "edited"
    shutil.copytree(built.path, copy)
    m = json.loads((copy / "manifest.json").read_text())
    m["candidates"]["small"]["input"] = 0.0
    (copy / "manifest.json").write_text(json.dumps(m, indent=1))
    assert verify(copy).manifest["candidates"]["small"]["input"] == 0.0  # checksums alone cannot see it
    with pytest.raises(BundleError, match="signature mismatch"):
        verify(copy, bundle_key())


def test_a_router_with_a_key_refuses_unsigned_bundles(
    built: ExportResult, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from serving.bundle import KEY_ENV, SIGNATURE, bundle_key, sign

    monkeypatch.setenv(KEY_ENV, KEY)
    with pytest.raises(
        BundleError, match=f"{SIGNATURE}: missing: this router only loads signed bundles \\({KEY_ENV} is set\\)"
    ):
        verify(built.path, bundle_key())
    (built.path / SIGNATURE).write_text("not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        verify(built.path, bundle_key())
    (built.path / SIGNATURE).unlink()
    os.symlink(built.path / "policy.json", built.path / SIGNATURE)
    with pytest.raises(BundleError, match="not a regular file|missing"):
        verify(built.path, bundle_key())
    with pytest.raises(BundleError, match="symlink"):
        verify(built.path)
    (built.path / SIGNATURE).unlink()
    sign(built.path, KEY.encode())
    assert verify(built.path, bundle_key()).manifest == built.manifest
    monkeypatch.setenv(KEY_ENV, "short")
    with pytest.raises(BundleError, match=f"{KEY_ENV}: key too short \\(5 bytes\\)"):
        bundle_key()
    monkeypatch.setenv(KEY_ENV, "")
    assert bundle_key() is None


def test_the_bundle_policy_is_the_one_training_calibrated() -> None:
    from models.export import trained_policy

    candidates = {"small": {"input": 0.1, "output": 0.2}, "big": {"input": 10.0, "output": 30.0}}
    calibrated = {"quality": {"policy": {"policy": "tradeoff", "lam": 0.25, "reached": True}}}
    assert trained_policy(calibrated, candidates) == {
        "name": "tradeoff",
        "args": {"lam": 0.25},
        "fallback_order": ["small", "big"],
    }
    assert trained_policy({"quality": {"policy": None}}, candidates) == default_policy(
        candidates
    )  # older side JSON: threshold 0.5

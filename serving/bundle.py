"""Read and verify an export bundle: the language-neutral contract a router (Python, JS, HTTP) loads.

A bundle is a directory (and a ``.tar.gz`` of it) written by `models/export.py`::

    manifest.json                   schema version, provenance, predictors, candidates + prices, policy,
                                    and {relative path: {sha256, bytes}} for every other file
    models/<predictor>/<key>.txt    LightGBM text model
    models/<predictor>/<key>.json   the same model as LightGBM JSON (for routers without LightGBM)
    <predictor>.json                side data: feature names, categories, p90 shift, heads, horizon
    feature_spec.json               the quality predictor's feature spec
    embedding/table.f32             (with an `embed` spec) projected token-embedding table, float32 LE, vocab x k
    embedding/tokenizer.json        (with an `embed` spec) the Llama-2 tokenizer (HF tokenizers JSON)
    policy.json                     the default routing policy config

`verify` trusts nothing but the manifest: every listed file must exist with its size and sha256, and no
other file may be present. `extract` unpacks an archive without letting a member escape its folder. `load`
(what every command's ``--bundle`` goes through) takes a folder, a symlink to one (resolved once; symlinks
inside the bundle are refused), or the ``.tar.gz`` (extracted into a private temporary folder that is removed
at exit); a path that does not exist is "<path>: bundle not found".

Optional signature: when `BEAST_BUNDLE_KEY` is set at export, `signature.json` holds an HMAC-SHA256 of the
exact manifest bytes under that key (the manifest pins every other file by sha256, so this signs the whole
bundle). A router that has the key set refuses a bundle that is unsigned or signed with another key: it
loads only bundles its own pipeline exported. Without a key the signature file is allowed and not checked.
This module is the router side: stdlib only, no mlflow / optuna / prefect / lightgbm / models.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from core.errors import BeastError

SCHEMA_VERSION = "1"
KIND = "beast-bundle"
MANIFEST = "manifest.json"
SIGNATURE = "signature.json"
SIGNATURE_KIND = "beast-bundle-signature"
KEY_ENV = "BEAST_BUNDLE_KEY"
MIN_KEY_BYTES = 16
PREDICTORS = ("quality", "cost", "cache")
REQUIRED_FILES = ("feature_spec.json", "policy.json")
MAX_BYTES = 512 * 2**20
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 2**20


class BundleError(BeastError):
    """A bundle that cannot be trusted or read; the message names the bundle, the file and the reason."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def safe_relpath(name: str) -> PurePosixPath | None:
    """`name` as a relative POSIX path inside the bundle, or None if it is absolute, has '..' or is empty."""
    if not name or "\\" in name or "\x00" in name or re.match(r"^[A-Za-z]:", name):
        return None
    path = PurePosixPath(name)
    parts = [p for p in path.parts if p != "."]
    if path.is_absolute() or not parts or ".." in parts:
        return None
    return PurePosixPath(*parts)


@dataclass(frozen=True)
class Bundle:
    """A verified bundle folder and its manifest; read its files through `text` / `json`."""

    root: Path
    manifest: Mapping[str, Any]

    @property
    def files(self) -> Mapping[str, Mapping[str, Any]]:
        return self.manifest["files"]

    @property
    def predictors(self) -> Mapping[str, Mapping[str, Any]]:
        return self.manifest["predictors"]

    @property
    def candidates(self) -> Mapping[str, Mapping[str, float]]:
        return self.manifest["candidates"]

    def path(self, rel: str) -> Path:
        """The file `rel` (a path listed in the manifest) inside the bundle."""
        if rel not in self.files:
            raise BundleError(f"{self.root}: {rel}: not listed in {MANIFEST}")
        return self.root.joinpath(*PurePosixPath(rel).parts)

    def read_bytes(self, rel: str) -> bytes:
        """The file's bytes, checked again against the manifest's sha256 (the folder may change after verify)."""
        data = self.path(rel).read_bytes()
        if hashlib.sha256(data).hexdigest() != self.files[rel]["sha256"]:
            raise BundleError(f"{self.root}: {rel}: tampered: sha256 mismatch since the bundle was verified")
        return data

    def text(self, rel: str) -> str:
        return self.read_bytes(rel).decode("utf-8")

    def json(self, rel: str) -> Any:
        try:
            return json.loads(self.text(rel))
        except (ValueError, RecursionError) as exc:  # bad UTF-8 / JSON, a 4300+ digit number, nesting too deep
            raise BundleError(f"{self.root}: {rel}: not valid JSON ({exc})") from None

    def side(self, predictor: str) -> Mapping[str, Any]:
        """The predictor's side JSON (feature names, categories, heads, ...)."""
        return self.json(self._predictor(predictor)["side"])

    def model_text(self, predictor: str, key: str) -> str:
        """LightGBM text of one booster: ``lgb.Booster(model_str=...)`` in Python."""
        return self.text(self._model(predictor, key)["text"])

    def model_json(self, predictor: str, key: str) -> Mapping[str, Any]:
        """LightGBM JSON dump of one booster (trees as nested dicts)."""
        return self.json(self._model(predictor, key)["json"])

    def feature_spec(self) -> Mapping[str, Any]:
        return self.json("feature_spec.json")

    def embed_files(self) -> tuple[str, bytes] | None:
        """(tokenizer JSON, projected table bytes) of the spec's `embed` family, None without one; each
        file must be listed and carry the sha256 the spec recorded at fit time."""
        spec = self.feature_spec().get("embed")
        if not spec:
            return None
        out = []
        for rel_key, sha_key in (("tokenizer", "tokenizer_sha256"), ("table", "table_sha256")):
            rel = spec.get(rel_key)
            if not isinstance(rel, str) or rel not in self.files:
                raise BundleError(
                    f"{self.root}: feature_spec.json: embed.{rel_key} {rel!r} is not a file of the bundle"
                )
            if self.files[rel]["sha256"] != spec.get(sha_key):
                raise BundleError(f"{self.root}: {rel}: sha256 differs from feature_spec.json embed.{sha_key}")
            out.append(self.read_bytes(rel))
        return out[0].decode("utf-8"), out[1]

    def policy(self) -> Mapping[str, Any]:
        return self.json("policy.json")

    def _predictor(self, predictor: str) -> Mapping[str, Any]:
        if predictor not in self.predictors:
            raise BundleError(f"{self.root}: no predictor {predictor!r}; the bundle has {', '.join(self.predictors)}")
        return self.predictors[predictor]

    def _model(self, predictor: str, key: str) -> Mapping[str, str]:
        models = self._predictor(predictor)["files"]
        if key not in models:
            raise BundleError(f"{self.root}: {predictor} has no booster {key!r}; it has {', '.join(models)}")
        return models[key]


def bundle_key(environ: Mapping[str, str] = os.environ) -> bytes | None:
    """The signing key from `BEAST_BUNDLE_KEY` (its UTF-8 bytes); None when unset or empty."""
    value = environ.get(KEY_ENV, "")
    if not value:
        return None
    key = value.encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise BundleError(f"{KEY_ENV}: key too short ({len(key)} bytes); use at least {MIN_KEY_BYTES} random bytes")
    return key


def signature(manifest_bytes: bytes, key: bytes) -> dict[str, str]:
    """The `signature.json` document for these exact manifest bytes."""
    return {
        "kind": SIGNATURE_KIND,
        "algorithm": "hmac-sha256",
        "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
        "hmac": hmac.new(key, manifest_bytes, hashlib.sha256).hexdigest(),
    }


def sign(root: Path, key: bytes) -> Path:
    """Write `root/signature.json` for the manifest as it is now (call after the manifest's last write)."""
    path = Path(root) / SIGNATURE
    path.write_text(json.dumps(signature((Path(root) / MANIFEST).read_bytes(), key), indent=1) + "\n", encoding="utf-8")
    return path


def check_signature(root: Path, manifest_bytes: bytes, key: bytes) -> None:
    """BundleError unless `signature.json` is this key's HMAC of exactly `manifest_bytes`."""
    path = root / SIGNATURE
    if path.is_symlink() or not path.is_file():
        raise BundleError(f"{root}: {SIGNATURE}: missing: this router only loads signed bundles ({KEY_ENV} is set)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8 / JSON, a 4300+ digit number, nesting too deep
        raise BundleError(f"{root}: {SIGNATURE}: not valid JSON ({exc})") from None
    if (
        not isinstance(doc, dict)
        or doc.get("kind") != SIGNATURE_KIND
        or doc.get("algorithm") != "hmac-sha256"
        or not isinstance(doc.get("hmac"), str)
    ):
        raise BundleError(f"{root}: {SIGNATURE}: not a hmac-sha256 bundle signature")
    if not hmac.compare_digest(doc["hmac"], signature(manifest_bytes, key)["hmac"]):
        raise BundleError(
            f"{root}: {SIGNATURE}: signature mismatch: signed with another key, or {MANIFEST} changed after signing"
        )


def _load_manifest(root: Path) -> tuple[dict[str, Any], bytes]:
    """The parsed manifest and the exact bytes it was parsed from (what a signature covers)."""
    path = root / MANIFEST
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle folder (missing or not a directory)")
    if path.is_symlink() or not path.is_file():
        raise BundleError(f"{root}: {MANIFEST}: missing")
    raw = path.read_bytes()
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8 / JSON, a 4300+ digit number, nesting too deep
        raise BundleError(f"{root}: {MANIFEST}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise BundleError(
            f"{root}: {MANIFEST}: not a beast bundle manifest (kind={manifest.get('kind') if isinstance(manifest, dict) else None!r})"
        )
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise BundleError(
            f"{root}: {MANIFEST}: unknown schema_version {manifest.get('schema_version')!r}; this reader knows {SCHEMA_VERSION!r}"
        )
    for key, kind in (("files", dict), ("predictors", dict), ("candidates", dict), ("policy", dict)):
        if not isinstance(manifest.get(key), kind):
            raise BundleError(f"{root}: {MANIFEST}: field {key!r} missing or not a {kind.__name__}")
    return manifest, raw


def _check_listing(root: Path, manifest: Mapping[str, Any]) -> None:
    """Every path the manifest's predictors / required files name is listed in `files`."""
    files = manifest["files"]
    named = list(REQUIRED_FILES)
    for name, entry in manifest["predictors"].items():
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("files"), dict)
            or not isinstance(entry.get("side"), str)
        ):
            raise BundleError(f"{root}: {MANIFEST}: predictors.{name}: expected side and files")
        named.append(entry["side"])
        for key, paths in entry["files"].items():
            if not isinstance(paths, dict) or not {"text", "json"} <= set(paths):
                raise BundleError(f"{root}: {MANIFEST}: predictors.{name}.files.{key}: expected text and json paths")
            named += [paths["text"], paths["json"]]
    for rel in named:
        if not isinstance(rel, str):
            raise BundleError(f"{root}: {MANIFEST}: predictor file path {rel!r}: expected text")
        if rel not in files:
            raise BundleError(f"{root}: {rel}: named by {MANIFEST} but not listed in its files")


def verify(root: Path, key: bytes | None = None) -> Bundle:
    """The bundle at `root` if every listed file is intact and nothing else is there; else BundleError naming
    the first bad file and why (missing / tampered: size or sha256 mismatch / unexpected file). With `key`,
    the bundle must also carry that key's signature of its manifest."""
    root = Path(root)
    manifest, raw = _load_manifest(root)
    files = manifest["files"]
    _check_listing(root, manifest)
    if key is not None:
        check_signature(root, raw, key)
    for rel in sorted(files):
        entry = files[rel]
        safe = safe_relpath(rel)
        if safe is None or str(safe) != rel or rel == MANIFEST:
            raise BundleError(
                f"{root}: {rel!r}: bad path in {MANIFEST} (absolute, '..', not normalised or the manifest itself)"
            )
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("sha256"), str)
            or not _SHA256.fullmatch(entry["sha256"])
            or type(entry.get("bytes")) is not int
        ):
            raise BundleError(f"{root}: {rel}: manifest entry needs sha256 (64 hex) and bytes (int), got {entry!r}")
        path = root.joinpath(*safe.parts)
        try:
            if path.is_symlink() or (path.exists() and not path.is_file()):
                raise BundleError(f"{root}: {rel}: not a regular file (symlink or folder)")
            if not path.is_file():
                raise BundleError(f"{root}: {rel}: missing")
            size = path.stat().st_size
            if size != entry["bytes"]:
                raise BundleError(
                    f"{root}: {rel}: tampered: size mismatch ({size} bytes, manifest says {entry['bytes']})"
                )
            digest = sha256_file(path)
        except OSError as exc:  # e.g. a name longer than the file system allows
            raise BundleError(f"{root}: {rel}: cannot read ({exc.strerror or exc})") from None
        if digest != entry["sha256"]:
            raise BundleError(f"{root}: {rel}: tampered: sha256 mismatch")
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in sorted(filenames) + sorted(d for d in dirnames if (base / d).is_symlink()):
            rel = (base / name).relative_to(root).as_posix()
            if rel not in (MANIFEST, SIGNATURE) and rel not in files:
                raise BundleError(f"{root}: {rel}: unexpected file (not listed in {MANIFEST})")
        dirnames.sort()
    if (root / SIGNATURE).is_symlink():
        raise BundleError(f"{root}: {SIGNATURE}: not a regular file (symlink)")
    return Bundle(root, manifest)


def _check_members(
    archive: Path, members: list[tarfile.TarInfo], max_bytes: int
) -> list[tuple[PurePosixPath, tarfile.TarInfo]]:
    out, seen, total = [], set(), 0
    for m in members:
        rel = safe_relpath(m.name)
        if rel is None:
            if m.isdir() and m.name.strip("/") in ("", "."):
                continue
            raise BundleError(f"{archive}: member {m.name!r}: unsafe path (absolute, '..' or empty)")
        if not (m.isfile() or m.isdir()):
            raise BundleError(
                f"{archive}: member {m.name!r}: not a regular file or folder (symlink, hard link or device)"
            )
        if str(rel) in seen:
            raise BundleError(f"{archive}: member {m.name!r}: appears twice")
        seen.add(str(rel))
        total += m.size if m.isfile() else 0
        if total > max_bytes:
            raise BundleError(
                f"{archive}: members exceed {max_bytes} bytes in total (at {m.name!r}); refusing to extract"
            )
        out.append((rel, m))
    return out


def extract(archive: Path, dest: Path, max_bytes: int = MAX_BYTES, key: bytes | None = None) -> Path:
    """Unpack a bundle archive into `dest` (which must not exist yet) and verify it; returns `dest`.

    Every member is checked before anything is written: no absolute paths, no '..', only regular files
    and folders (no symlinks, hard links or devices), at most `max_bytes` in total. Files are written by
    this function (never `extractall`) into a temp folder beside `dest`, verified, then renamed into place.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.exists():
        raise BundleError(f"{dest}: already exists; extract into a new folder")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = _check_members(archive, tar.getmembers(), max_bytes)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
            try:
                for rel, m in members:
                    target = tmp.joinpath(*rel.parts)
                    if m.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(m)
                    if src is None:
                        raise BundleError(f"{archive}: member {m.name!r}: cannot be read")
                    with src, open(target, "xb") as fh:
                        shutil.copyfileobj(src, fh, _CHUNK)
                verify(tmp, key)
                os.rename(tmp, dest)
            except BundleError as exc:
                raise BundleError(str(exc).replace(str(tmp), f"{archive} (extracted)")) from None
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BundleError(f"{archive}: cannot extract: {type(exc).__name__}: {exc}") from None
    return dest


def _private_folder() -> Path:
    """A new folder only this user can enter (mode 0700), removed when the process that made it exits (not
    when a forked worker exits: the parent and the other workers may still read it)."""
    folder = Path(tempfile.mkdtemp(prefix="beast-bundle-"))
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:
            shutil.rmtree(folder, ignore_errors=True)

    atexit.register(remove)
    return folder


def load(path: Path, dest: Path | None = None, key: bytes | None = None) -> Bundle:
    """A verified bundle (signed with `key` when given) from a folder (a symlink to one is followed), or from a
    ``.tar.gz`` extracted into `dest` -- by default into a private temporary folder removed at exit (the same
    member checks, size cap and verification as `extract`). A path that does not exist: "<path>: bundle not
    found"."""
    path = Path(path)
    if not path.exists():  # also a dangling symlink
        raise BundleError(f"{path}: bundle not found")
    if path.is_dir():  # a symlink to a folder (`current -> v3`) is resolved once: every read is of one version
        return verify(path.resolve() if path.is_symlink() else path, key)
    if dest is not None:
        return verify(extract(path, dest, max_bytes=MAX_BYTES, key=key), key)
    private = _private_folder()
    try:
        bundle = verify(extract(path, private / "bundle", max_bytes=MAX_BYTES, key=key), key)
    except BaseException:
        shutil.rmtree(private, ignore_errors=True)
        raise
    return bundle

"""What a hostile (or careless) client or deployer found: a bundle given as its .tar.gz or through a symlink,
a request claiming 2^63 - 1 input tokens against the budget policy, and policy configs of the wrong shape --
each refused (or accepted) with one clear line, alike in the Python and the Node router."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from serving import bundle as bundle_mod
from serving.budget import BudgetState, write_state
from serving.bundle import BundleError, load
from serving.router import (
    BREAKER_ARGS,
    MAX_INPUT_TOKENS,
    POLICIES,
    POLICY_ARGS,
    Router,
    RouteRequest,
    check_policy_config,
    make_policy,
    route_stream,
)

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node (Node.js >= 20) is not on PATH")
JS = ROOT / "serving" / "js"
CASES = json.loads((Path(__file__).parent / "policy_configs.json").read_text())["cases"]


def node_module(script: str, *args: str, stdin: str = "") -> object:
    """Run an ES-module snippet (imports relative to serving/js); its stdout parsed as JSON."""
    prelude = 'import {readFileSync as readStdin} from "node:fs"; const require_stdin = () => readStdin(0, "utf8");\n'
    done = subprocess.run(
        [NODE, "--input-type=module", "-e", prelude + script.replace('"./', '"' + JS.as_uri() + "/"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def js_load(folder: Path) -> str:
    """'ok' if node's loadBundle accepts `folder`, else its error message."""
    return node_module(
        'import {loadBundle} from "./bundle.mjs"; let out = "ok";'
        " try { loadBundle(process.argv[1]); } catch (e) { out = `${e.name}: ${e.message}`; }"
        " process.stdout.write(JSON.stringify(out));",
        str(folder),
    )


def _rewrite(folder: Path, rel: str, data: bytes) -> None:
    """Replace one file and fix its manifest entry (so only the check under test can object)."""
    (folder / rel).write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][rel] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where `tempfile` makes folders during the test (so what a load leaves behind can be seen)."""
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


# ------------------------------------------------------------------ 1. --bundle X.tar.gz, missing paths


def test_router_loads_a_bundle_archive_into_a_private_folder(routed, private_tmp: Path) -> None:
    tmp, _, router = routed
    archive = tmp / "bundle.tar.gz"
    assert archive.is_file()
    from_archive = Router.load(archive)  # was: "an archive needs a destination folder to extract into"
    root = from_archive.bundle.root
    assert root.is_relative_to(private_tmp) and not root.is_relative_to(tmp)
    assert (root.parent.stat().st_mode & 0o777) == 0o700  # only this user can enter it
    assert from_archive.bundle.manifest == router.bundle.manifest and from_archive.models == router.models
    request = RouteRequest(prompt="Write a haiku about the sea.", timestamp=dt.datetime(2025, 1, 1, 10, tzinfo=dt.UTC))
    assert from_archive.route(request, now=0.0).model == Router.load(tmp / "bundle").route(request, now=0.0).model
    assert list(archive.parent.glob(".bundle*")) == []  # nothing written beside the archive


def test_an_archive_bundle_is_removed_at_exit(routed, tmp_path: Path) -> None:
    tmp, _, _ = routed
    code = "import sys; from serving.bundle import load; print(load(sys.argv[1]).root)"
    env = os.environ | {"TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp / "bundle.tar.gz")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    root = Path(done.stdout.strip())
    assert root.is_relative_to(tmp_path) and root.name == "bundle"
    assert not root.exists() and list(tmp_path.iterdir()) == []


def test_beast_route_takes_the_archive(routed, private_tmp: Path, monkeypatch, capsys) -> None:
    """`beast route --bundle bundle.tar.gz`, as its --help and the README say (every --bundle goes through
    `serving.bundle.load`); a missing one is one line, exit 1."""
    from beast.cli import main

    tmp, _, _ = routed
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"prompt": "Write a haiku", "request_id": "r1"}\n'))
    assert main(["route", "--bundle", str(tmp / "bundle.tar.gz")]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["request_id"] == "r1" and row["model"] in routed[2].models
    assert main(["route", "--bundle", str(tmp / "missing.tar.gz")]) != 0
    assert f"{tmp / 'missing.tar.gz'}: bundle not found" in capsys.readouterr().err


def test_a_missing_bundle_is_not_found(tmp_path: Path, private_tmp: Path) -> None:
    for path in (tmp_path / "nope", tmp_path / "nope.tar.gz"):
        with pytest.raises(BundleError, match=f"^{re.escape(str(path))}: bundle not found$"):
            Router.load(path)
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    with pytest.raises(BundleError, match="dangling: bundle not found$"):
        load(tmp_path / "dangling")
    assert list(private_tmp.iterdir()) == []


def _repack(src: Path, dst: Path, extra: tarfile.TarInfo | None = None) -> Path:
    with tarfile.open(src, "r:gz") as a, tarfile.open(dst, "w:gz") as b:
        for m in a.getmembers():
            b.addfile(m, a.extractfile(m))
        if extra is not None:
            b.addfile(extra, io.BytesIO(b"evil") if extra.isfile() else None)
    return dst


@pytest.mark.parametrize(
    ("name", "kind", "link", "message"),
    [
        ("../evil", tarfile.REGTYPE, "", "unsafe path"),
        ("/tmp/beast-evil-abs", tarfile.REGTYPE, "", "unsafe path"),
        ("models/../../evil", tarfile.REGTYPE, "", "unsafe path"),
        ("escape", tarfile.SYMTYPE, "/etc", "not a regular file"),
        ("hard", tarfile.LNKTYPE, "/etc/passwd", "not a regular file"),
        ("models/extra.txt", tarfile.REGTYPE, "", "unexpected file"),
    ],
)
def test_load_refuses_a_hostile_archive_and_leaves_nothing(
    routed, tmp_path: Path, private_tmp: Path, name: str, kind: bytes, link: str, message: str
) -> None:
    tmp, _, _ = routed
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, 4 if kind == tarfile.REGTYPE else 0
    archive = _repack(tmp / "bundle.tar.gz", tmp_path / "evil.tar.gz", info)
    with pytest.raises(BundleError, match=message):
        Router.load(archive)
    assert list(private_tmp.iterdir()) == []  # the private folder is gone at once, not at exit
    assert not Path("/tmp/beast-evil-abs").exists() and not (tmp_path / "evil").exists()


def test_load_refuses_an_archive_above_the_size_cap(routed, private_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp, _, _ = routed
    monkeypatch.setattr(bundle_mod, "MAX_BYTES", 1000)
    with pytest.raises(BundleError, match="exceed 1000 bytes"):
        load(tmp / "bundle.tar.gz")
    assert list(private_tmp.iterdir()) == []


def test_a_tampered_archive_is_refused_like_a_folder(routed, tmp_path: Path, private_tmp: Path) -> None:
    tmp, _, _ = routed
    archive = tmp_path / "tampered.tar.gz"
    with tarfile.open(tmp / "bundle.tar.gz", "r:gz") as a, tarfile.open(archive, "w:gz") as b:
        for m in a.getmembers():
            data = a.extractfile(m).read()
            if m.name == "policy.json":
                data = data.replace(b"threshold", b"tradeoff!")
            b.addfile(m, io.BytesIO(data))
    with pytest.raises(BundleError, match=r"tampered.tar.gz \(extracted\): policy.json: tampered: sha256 mismatch"):
        Router.load(archive)
    assert list(private_tmp.iterdir()) == []


# ------------------------------------------------------------------ 2. huge input_tokens vs the budget policy


def test_input_tokens_above_the_largest_context_are_refused(routed) -> None:
    assert MAX_INPUT_TOKENS == 2_000_000
    assert RouteRequest.from_dict({"input_tokens": MAX_INPUT_TOKENS}).input_tokens == MAX_INPUT_TOKENS
    for tokens in (MAX_INPUT_TOKENS + 1, 2**63 - 1, 2**64):
        with pytest.raises(ValueError, match=r"^input_tokens: expected an integer in 0\.\.2000000 "):
            RouteRequest.from_dict({"input_tokens": tokens})
    out = io.StringIO()
    bad = route_stream(routed[2], [json.dumps({"prompt": "hi", "input_tokens": 2**63 - 1})], out)
    row = json.loads(out.getvalue())
    assert bad == 1 and row["line"] == 1 and row["error"].startswith("input_tokens: expected an integer in 0..2000000")


@needs_node
def test_node_refuses_the_same_input_tokens() -> None:
    got = node_module(
        'import {RouteRequest} from "./beast-router.mjs"; const out = [];'
        " for (const t of JSON.parse(require_stdin())) { try { out.push(RouteRequest.fromDict({input_tokens: t}).inputTokens); }"
        " catch (e) { out.push(e.message); } } process.stdout.write(JSON.stringify(out));",
        stdin=json.dumps([MAX_INPUT_TOKENS, MAX_INPUT_TOKENS + 1, 2**63 - 1]),
    )
    assert got[0] == MAX_INPUT_TOKENS
    assert all(m.startswith("input_tokens: expected an integer in 0..2000000 ") for m in got[1:])


def test_a_huge_prompt_estimate_is_bounded(routed) -> None:
    router = routed[2]
    tokens, _, _ = router.request_features(RouteRequest(input_tokens=2**63 - 1))
    assert tokens == MAX_INPUT_TOKENS
    _, cost = router.predict(RouteRequest(input_tokens=2**63 - 1))
    _, at_cap = router.predict(RouteRequest(input_tokens=MAX_INPUT_TOKENS))
    np.testing.assert_array_equal(cost, at_cap)
    assert cost.max() < 1000  # was ~$9.2e11 for one request


def _paced(bundle: Path, state_path: Path) -> Router:
    now = dt.datetime.now(dt.UTC)
    write_state(
        state_path, BudgetState("all", now - dt.timedelta(days=1), now + dt.timedelta(hours=10), 100.0, 50.0, now)
    )
    return Router.load(bundle, budget_file=state_path)


def test_one_huge_request_cannot_starve_the_budget_policy(routed, tmp_path: Path) -> None:
    """$50 left for 10 hours. One request claiming 2^63 - 1 tokens used to be charged $9.2e11: the remaining
    budget went to 0 and every later request went to the cheapest model for the rest of the period. Now it is
    refused at the door (from_dict), and even past it (a RouteRequest built in code) it is charged at most a
    full context's cost, after which the pace recovers to what an untouched router does."""
    tmp, _, _ = routed
    spiked, control = _paced(tmp / "bundle", tmp_path / "a.json"), _paced(tmp / "bundle", tmp_path / "b.json")
    rng = np.random.default_rng(0)
    words = ["sea", "code", "proof", "poem", "list", "story", "math", "explain", "translate", "compare", "summarise"]
    first = spiked.route(RouteRequest(prompt="hi", input_tokens=2**63 - 1), now=0.0)
    _, at_cap = spiked.predict(RouteRequest(prompt="hi", input_tokens=MAX_INPUT_TOKENS))
    charged = first.predicted_cost_usd
    assert charged == at_cap[spiked.models.index(first.model)] < 5.0  # a full context on a cheap model: was $9.2e11
    assert spiked.policy.file.remaining_usd() == pytest.approx(50.0 - charged) and 50.0 - charged > 45.0
    same = []
    for t in range(1, 721):  # an hour, one request every 5 s
        request = RouteRequest(prompt=" ".join(rng.choice(words, size=rng.integers(3, 30))))
        a, b = spiked.route(request, now=5.0 * t), control.route(request, now=5.0 * t)
        same.append(a.model == b.model)
    assert spiked.policy.budget > 4.0  # still pacing ~$5/h, not $0/h
    assert np.mean(same[-180:]) >= 0.9  # the last 15 minutes route as if the huge request never came


# ------------------------------------------------------------------ 3. policy configs: checked, alike in both


def _py_verdict(text: str) -> str:
    """'ok' or the BundleError line Python gives for this policy.json text (parsed as Bundle.json parses it)."""
    try:
        make_policy(json.loads(text))
    except BundleError as exc:
        assert "\n" not in str(exc)
        return f"BundleError: {exc}"
    return "ok"


@pytest.mark.parametrize("case", CASES, ids=[c["policy_json"][:70] for c in CASES])
def test_python_accepts_and_refuses_the_shared_policy_configs(case: dict) -> None:
    verdict = _py_verdict(case["policy_json"])  # any other exception (a traceback) fails the test
    if case["ok"]:
        assert verdict == "ok"
    else:
        assert verdict.startswith("BundleError: ")
        if case["error"] is not None:
            assert case["error"] in verdict


@needs_node
def test_node_accepts_and_refuses_the_same_policy_configs() -> None:
    got = node_module(
        'import {makePolicy} from "./beast-router.mjs"; const out = [];'
        " for (const c of JSON.parse(require_stdin())) { let v = 'ok';"
        "  try { makePolicy(JSON.parse(c.policy_json)); }"
        "  catch (e) { v = e instanceof SyntaxError ? `SyntaxError: ${e.message}` : `${e.name}: ${e.message}`; }"
        "  out.push(v); } process.stdout.write(JSON.stringify(out));",
        stdin=json.dumps(CASES),
    )
    for case, verdict in zip(CASES, got, strict=True):
        if case["ok"]:
            assert verdict == "ok", case
        elif case["error"] is None:  # not strict JSON: node cannot even read the file (a BundleError in a bundle)
            assert verdict.startswith("SyntaxError: "), case
        else:
            assert verdict.startswith("BundleError: ") and case["error"] in verdict, (case, verdict)


def test_the_shared_cases_cover_every_setting_and_policy() -> None:
    text = " ".join(c["policy_json"] for c in CASES)
    assert all(f'"{name}"' in text for name in POLICIES)
    assert all(f'"{arg}"' in text for args in POLICY_ARGS.values() for arg in args)
    assert all(f'"{arg}"' in text for arg in BREAKER_ARGS)
    import inspect

    for name, rules in POLICY_ARGS.items():  # every settable argument is one of the class's own
        assert set(rules) <= set(inspect.signature(POLICIES[name]).parameters), name


def test_check_policy_config_normalises_what_it_accepts() -> None:
    name, args, order, breaker = check_policy_config(
        {"name": "budget", "args": {"usd_per_hour": 3, "lam": 1}, "fallback_order": ["a"], "breaker": {"window": 6.0}}
    )
    assert (name, args, order, breaker) == ("budget", {"usd_per_hour": 3.0, "lam": 1.0}, ("a",), {"window": 6})
    assert type(breaker["window"]) is int and type(args["usd_per_hour"]) is float


def test_a_bad_policy_is_one_clear_line_from_the_router(routed, tmp_path: Path) -> None:
    tmp, _, router = routed
    for policy, message in [
        ([{"name": "threshold"}], "policy override: policy: expected an object"),
        ({"name": "threshold", "args": {"target_quality": "high"}}, "target_quality must be a finite number"),
        ({"name": "tradeoff", "args": {"lam": 0.1, "lambda": 2}}, "unknown argument 'lambda'"),
        ({"name": "threshold", "args": {"target_quality": float("nan")}}, "target_quality must be a finite number"),
        ({"name": "threshold", "fallback_order": 7}, "fallback_order must be a list of model names"),
        ({"name": "threshold", "breaker": {"window": "20"}}, "breaker: window must be a finite number"),
    ]:
        with pytest.raises(BundleError, match=message):
            Router(router.bundle, policy)
    copy = tmp_path / "bundle"
    shutil.copytree(tmp / "bundle", copy)
    _rewrite(copy, "policy.json", b'[{"name": "threshold"}]')
    state = tmp_path / "budget.json"
    now = dt.datetime.now(dt.UTC)
    write_state(state, BudgetState("all", now - dt.timedelta(days=1), now + dt.timedelta(hours=1), 10.0, 0.0, now))
    for budget_file in (None, state):
        with pytest.raises(
            BundleError, match=f"^{re.escape(str(copy))}: policy.json: policy: expected an object .*got array$"
        ):
            Router.load(copy, budget_file=budget_file)
    _rewrite(copy, "policy.json", b'{"name": "threshold", "args": {"target_quality": NaN}}')
    with pytest.raises(
        BundleError, match="policy.json: policy threshold: args: target_quality must be a finite number"
    ):
        Router.load(copy)
    if NODE is not None:
        assert js_load(copy) == "ok"  # the folder itself is intact; the Router refuses its policy
        got = node_module(
            'import {Router} from "./beast-router.mjs"; let out = "ok";'
            " try { Router.load(process.argv[1]); } catch (e) { out = `${e.name}: ${e.message}`; }"
            " process.stdout.write(JSON.stringify(out));",
            str(copy),
        )
        assert got.startswith(f"BundleError: {copy}: policy.json: not valid JSON"), got
        _rewrite(copy, "policy.json", b'[{"name": "threshold"}]')
        got = node_module(
            'import {Router} from "./beast-router.mjs"; let out = "ok";'
            " try { Router.load(process.argv[1]); } catch (e) { out = `${e.name}: ${e.message}`; }"
            " process.stdout.write(JSON.stringify(out));",
            str(copy),
        )
        assert got.startswith(f"BundleError: {copy}: policy.json: policy: expected an object"), got


# ------------------------------------------------------------------ 4. a symlinked bundle root


def _deployment(routed, tmp_path: Path) -> tuple[Path, Path]:
    """releases/v3 (a copy of the bundle) and current -> releases/v3, the usual deployment."""
    tmp, _, _ = routed
    v3 = tmp_path / "releases" / "v3"
    shutil.copytree(tmp / "bundle", v3)
    current = tmp_path / "current"
    current.symlink_to(v3, target_is_directory=True)
    return v3, current


def test_python_loads_a_symlinked_bundle_root_resolved_once(routed, tmp_path: Path) -> None:
    v3, current = _deployment(routed, tmp_path)
    router = Router.load(current)
    assert router.bundle.root == v3.resolve()  # read from v3 even if `current` moves on later
    assert router.bundle.manifest == routed[2].bundle.manifest


@needs_node
def test_node_loads_a_symlinked_bundle_root(routed, tmp_path: Path) -> None:
    _, current = _deployment(routed, tmp_path)
    assert js_load(current) == "ok"  # was: "current: not a bundle folder (missing or not a directory)"
    got = node_module(
        'import {Router} from "./beast-router.mjs"; const r = Router.load(process.argv[1]);'
        ' process.stdout.write(JSON.stringify(r.route({prompt: "hi", timestamp: "2025-01-01T10:00:00Z"}, 0).model));',
        str(current),
    )
    assert (
        got
        == Router.load(current)
        .route(RouteRequest.from_dict({"prompt": "hi", "timestamp": "2025-01-01T10:00:00Z"}), now=0.0)
        .model
    )


@pytest.mark.parametrize("where", ["file", "folder", "extra"])
def test_both_refuse_symlinks_inside_a_symlinked_bundle(routed, tmp_path: Path, where: str) -> None:
    v3, current = _deployment(routed, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    if where == "file":  # a listed file replaced by a symlink to an identical copy outside the bundle
        shutil.copy(v3 / "policy.json", outside / "policy.json")
        (v3 / "policy.json").unlink()
        (v3 / "policy.json").symlink_to(outside / "policy.json")
        want = "policy.json: not a regular file (symlink or folder)"
    elif where == "folder":  # a folder of listed files moved outside and linked back
        shutil.move(v3 / "models", outside / "models")
        (v3 / "models").symlink_to(outside / "models", target_is_directory=True)
        want = "models: unexpected file (not listed in manifest.json)"
    else:  # an extra link to the system
        (v3 / "escape").symlink_to("/etc", target_is_directory=True)
        want = "escape: unexpected file (not listed in manifest.json)"
    with pytest.raises(BundleError) as exc:
        load(current)
    assert str(exc.value) == f"{v3.resolve()}: {want}"  # the resolved folder is named, as it is what was read
    if NODE is not None:
        assert js_load(current) == f"BundleError: {v3.resolve()}: {want}"


@needs_node
def test_node_says_not_found_for_a_missing_bundle(tmp_path: Path) -> None:
    assert js_load(tmp_path / "nope") == f"BundleError: {tmp_path / 'nope'}: bundle not found"
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    assert js_load(tmp_path / "dangling") == f"BundleError: {tmp_path / 'dangling'}: bundle not found"

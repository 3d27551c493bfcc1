"""Stage `gate` + promotion: read an A/B experiment, let the gate's pure decision (`abtest.gate.decide`)
speak, write its report, and on promote move the MLflow aliases and re-export the champion bundle, all under
the registry's alias lock with a journal a crash can be recovered from; `rollback` undoes the last promotion."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

from abtest.gate import DECISION_TESTS, GateDecision, GateParams, decide, report


def gate_metrics(decision: GateDecision) -> dict[str, float]:
    """The numbers worth comparing across gate runs in the MLflow UI (estimate, bounds, p per test)."""
    out = {}
    for name in DECISION_TESTS:
        for key in ("estimate", "ci_low", "ci_high", "p_value"):
            value = decision.stats.get(name, {}).get(key)
            if isinstance(value, int | float):
                out[f"{name}.{key}"] = float(value)
    out["srm.p_value"] = float(decision.stats.get("srm", {}).get("p_value", math.nan))
    return out


def recover(bundle: Path, uri: str | None, say) -> list:
    """Under the alias lock: if a mover died mid-way (its journal is there), put its aliases back and
    re-export the champion bundle, so aliases and bundle agree again. Returns the moves undone."""
    from models import registry
    from models.export import export

    pending = registry.pending_moves(uri)
    if pending:
        registry.undo(pending, uri)
        export(registry.CHAMPION, bundle, overwrite=True, uri=uri)
        registry.end_moves(uri)
        say(
            f"  recovered an interrupted alias move: {'; '.join(m.describe() for m in pending)} undone, {bundle} re-exported"
        )
    return pending


def move_and_export(plan, bundle: Path, uri: str | None, say) -> tuple[list, Path | None]:
    """Under the alias lock: recover, plan the moves, journal them, apply them, re-export the bundle, close
    the journal. A crash anywhere leaves either nothing moved or a journal the next mover undoes."""
    from models import registry

    recover(bundle, uri, say)
    moves = plan(uri=uri)
    if moves:
        registry.begin_moves(moves, uri)
    registry.apply(moves, uri)
    for m in moves:
        say(f"  {m.describe()}")
    manifest = _export_champion(bundle, uri, moves, say)
    registry.end_moves(uri)
    return moves, manifest


def _export_champion(bundle: Path, uri: str | None, moves: list, say) -> Path | None:
    """Re-export the champion bundle after `moves`; on failure put the aliases back and re-raise."""
    from core.errors import BeastError
    from models import registry
    from models.export import export

    if not moves:
        return None
    try:
        result = export(registry.CHAMPION, bundle, overwrite=True, uri=uri)
    except BeastError:
        registry.undo(moves, uri)
        registry.end_moves(uri)
        say("  export failed: aliases put back")
        raise
    say(f"  bundle {result.path} and {result.archive} ({result.files} files)")
    return result.path / "manifest.json"


def main(
    experiment: Path,
    params_file: Path | None = None,
    dry_run: bool = False,
    as_json: bool = False,
    out_dir: Path = Path("data/gate"),
    uri: str | None = None,
    bundle: Path = Path("data/bundle"),
) -> GateDecision:
    """Read an experiment (trace file or dataset folder), decide, report; on promote move the aliases
    (``previous`` <- old champion, ``champion`` <- challenger) and re-export `bundle`, under the alias lock;
    log the decision, report and moves to MLflow (experiment ``beast-gate``)."""
    from core.config import load_params
    from models import registry
    from traces.ingest import IngestParams
    from traces.load import load_traces

    params = load_params(params_file, "gate", GateParams)
    traces = load_traces([Path(experiment)], load_params(params_file, "ingest", IngestParams).prices)
    say = (lambda m: print(m, file=sys.stderr)) if as_json else print
    name = str(Path(experiment).resolve())
    looks = 0 if dry_run else sum(r.params.get("experiment") == name for r in registry.gate_runs(uri))
    if looks and not params.sequential:  # a second look at the same experiment: only an always-valid p is honest
        params = dataclasses.replace(params, sequential=True)
        say(f"  {experiment} was gated {looks} time(s) before: quality decides on the always-valid mSPRT p-value")
    decision = decide(traces, params)
    if as_json:
        print(decision.to_json())
    else:
        say(f"gate: {'PROMOTE' if decision.promote else 'BLOCKED'} ({', '.join(decision.reasons)})")
    if dry_run:
        return decision
    md, png = report(decision, out_dir, params)
    (out_dir / "decision.json").write_text(decision.to_json() + "\n")
    say(f"  wrote {md}, {png} and {out_dir / 'decision.json'}")
    moves: list = []
    manifest = None
    artifacts = {"gate.md": md, "gate.png": png, "decision.json": out_dir / "decision.json"}
    if not decision.promote:  # a blocked gate still repairs what a killed mover left, so the champion is served
        with registry.alias_lock(uri):
            recover(bundle, uri, say)
    else:
        with registry.alias_lock(uri):
            moves, manifest = move_and_export(registry.plan_promote, bundle, uri, say)
            if not moves:
                say(f"  nothing to move: every {registry.CHALLENGER} already is the {registry.CHAMPION}")
    if manifest is not None:
        artifacts["bundle/manifest.json"] = manifest
    run_id = registry.log_gate_run(
        "promote" if decision.promote else "blocked", moves, artifacts,
        params=dataclasses.asdict(params) | {"experiment": name, "looks_before": looks},
        metrics=gate_metrics(decision), tags={"beast.gate.reasons": ",".join(decision.reasons)}, uri=uri,
    )  # fmt: skip
    say(f"  logged to MLflow experiment {registry.GATE_EXPERIMENT}, run {run_id}")
    return decision


def rollback(uri: str | None = None, bundle: Path = Path("data/bundle"), out_dir: Path = Path("data/gate")) -> list:
    """`beast rollback`: swap ``champion`` and ``previous`` for every predictor that has a ``previous``,
    re-export `bundle`, and log the moves as a ``beast-gate`` run; an error if there is nothing to roll back."""
    from core.errors import BeastError
    from models import registry

    with registry.alias_lock(uri):
        moves, manifest = move_and_export(registry.plan_rollback, bundle, uri, print)  # recovers first
        if not moves:
            raise BeastError(
                f"rollback: no predictor has a {registry.PREVIOUS!r} version other than its {registry.CHAMPION}; nothing to roll back"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    note = out_dir / "rollback.md"
    note.write_text("# Rollback\n\n" + "\n".join(f"- {m.describe()}" for m in moves) + "\n")
    artifacts = {"rollback.md": note} | ({"bundle/manifest.json": manifest} if manifest is not None else {})
    run_id = registry.log_gate_run("rollback", moves, artifacts, params={}, metrics={}, uri=uri)
    print(f"  logged to MLflow experiment {registry.GATE_EXPERIMENT}, run {run_id}")
    return moves

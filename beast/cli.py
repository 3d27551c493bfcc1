"""`beast`: one command; the stage verbs (`beast ingest`, `beast train`, ...) at the top level, the rest in groups
named after their packages (`beast traces import`, `beast eval routing`, `beast cache sim`, ...); the old flat names
still work until 0.2 (ALIASES). Heavy imports happen inside each handler so `beast --help` stays instant.
Expected failures (BeastError, or a write the file system refused: disk full, read-only, permission) print one
line naming the command path (`beast cache sim: error: ...`) and exit 2."""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from core.errors import BeastError

# traces.synth.PREFIX_REGIMES, spelled out so parsing the command line does not import numpy (tested equal)
PREFIX_REGIMES = ("system", "multiturn", "toolloop", "oneoff", "mixture")

EXIT_OK, EXIT_STRICT, EXIT_ERROR = 0, 1, 2

# The command tree: the stage verbs at the top level, everything else in groups named after their packages.
# Group -> (its line in `beast --help`, its --help description); groups are listed in this order.
GROUPS: dict[str, tuple[str, str]] = {
    "traces": (
        "Trace data",
        "Trace data: import public data sets as contract-v1 samples, synthesize traces, print the contract, join feedback labels.",
    ),
    "eval": (
        "Routing quality offline",
        "Routing quality offline: the routing benchmark on held-out prompts, and the replay of two bundles that feeds `beast gate`.",
    ),
    "monitor": (
        "Watching the traces",
        "Watching the traces: drift and the retrain decision, the monitoring report, cost budgets, savings recommendations.",
    ),
    "cache": (
        "Cache experiments on real traces",
        "Cache experiments on real traces: prefix-cache policies, two cache tiers, a semantic response cache.",
    ),
    "bench": (
        "Speed benchmarks",
        "Speed benchmarks, each next to a plain baseline: ingest, training, routing, serving, scale-out, CLI start-up.",
    ),
}

# Old command name -> its new path: still accepted until 0.2 (argv is rewritten before parsing, with a note on stderr).
# `bench` and `monitor` are group names now: `beast bench --traces X` is still the routing benchmark and
# `beast monitor [FILE]` still drift, while `beast bench ingest` / `beast monitor report` are the group's commands.
ALIASES: dict[str, tuple[str, ...]] = {
    "serve-router": ("serve",),
    "import": ("traces", "import"),
    "synth": ("traces", "synth"),
    "contract": ("traces", "contract"),
    "feedback": ("traces", "feedback"),
    "bench": ("eval", "routing"),
    "replay": ("eval", "replay"),
    "monitor": ("monitor", "drift"),
    "report": ("monitor", "report"),
    "budget": ("monitor", "budget"),
    "recommend": ("monitor", "recommend"),
    "cache-sim": ("cache", "sim"),
    "cache-tiers": ("cache", "tiers"),
    "semantic-cache": ("cache", "semantic"),
    "bench-ingest": ("bench", "ingest"),
    "bench-train": ("bench", "train"),
    "bench-route": ("bench", "route"),
    "bench-serve": ("bench", "serve"),
    "bench-scale": ("bench", "scale"),
}


def _ingest(args: argparse.Namespace) -> int:
    from traces.ingest import StrictFailure, main

    overrides = {
        "prices": args.prices,
        "out": args.out,
        "quarantine": args.quarantine,
        "metrics": args.metrics,
        "strict": args.strict or None,
    }
    try:
        main(args.paths, params_file=args.params, overrides=overrides, ingest_id=args.ingest_id)
    except StrictFailure as failure:
        print(f"beast ingest: {failure}", file=sys.stderr)
        return EXIT_STRICT
    return EXIT_OK


def _import(args: argparse.Namespace) -> int:
    from traces.importers import DEFAULT_SRC, run_import

    src = args.src or DEFAULT_SRC[args.source]
    result = run_import(args.source, Path(src), args.out)
    print(f"imported {result.source}: {result.rows:,} rows from {src}")
    for out in result.outputs:
        print(f"  wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    for note in result.notes:
        print(f"  note: {note}")
    return EXIT_OK


def _synth(args: argparse.Namespace) -> int:
    from traces.synth import main

    result = main(
        args.out,
        params_file=args.params,
        overrides={
            "rows": args.rows,
            "seed": args.seed,
            "malformed": args.malformed,
            "prefix_regime": args.prefix_regime,
        },
        prices_file=args.prices,
    )
    print(f"wrote {result.rows:,} rows to {result.path} ({result.malformed:,} malformed)")
    for reason, n in sorted(result.malformed_by_reason.items()):
        print(f"  {reason}: {n:,}")
    return EXIT_OK


def _contract(args: argparse.Namespace) -> int:
    from traces.contract import render_markdown

    print(render_markdown(), end="")
    return EXIT_OK


def _bench_ingest(args: argparse.Namespace) -> int:
    from benchmarks.ingest import main

    main(rows=args.rows, fmt=args.format, seed=args.seed)
    return EXIT_OK


def _train(args: argparse.Namespace) -> int:
    from models.train import PREDICTORS, main

    which = PREDICTORS if args.predictor == "all" else (args.predictor,)
    main(
        which,
        params_file=args.params,
        traces=args.traces or (),
        register=False if args.no_register else None,
        engine=args.engine,
    )
    return EXIT_OK


def _metrics(args: argparse.Namespace) -> int:
    from core.config import load_params
    from models.train import TrainParams, metrics_summary

    print(metrics_summary(args.folder or load_params(args.params, "train", TrainParams).metrics))
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from models.export import export

    if args.from_dir is not None:
        from models.export import export_local

        result = export_local(args.from_dir, args.out, prices_file=args.prices, overwrite=args.overwrite)
    else:
        result = export(args.alias, args.out, prices_file=args.prices, overwrite=args.overwrite)
    print(f"bundle {result.path} ({result.files} files, {result.bytes / 1e6:.1f} MB) and {result.archive}")
    for name, entry in result.manifest["predictors"].items():
        source = (
            f"{args.from_dir} (unregistered)"
            if args.from_dir is not None
            else f"{entry.get('registered_name')} version {entry.get('version')} (@{args.alias})"
        )
        print(f"  {name}: {len(entry['keys'])} booster(s) from {source}")
    return EXIT_OK


def _route(args: argparse.Namespace) -> int:
    from serving.router import Router, route_stream

    bad = route_stream(Router.load(args.bundle, args.budget_file), sys.stdin, sys.stdout)
    if bad:
        print(f"beast route: {bad} request line(s) could not be routed (see their error objects)", file=sys.stderr)
    return EXIT_STRICT if bad else EXIT_OK


def _bench_route(args: argparse.Namespace) -> int:
    from benchmarks.route import main

    main(args.bundle, n=args.requests)
    return EXIT_OK


def _bench_serve(args: argparse.Namespace) -> int:
    from benchmarks.serve import main

    result = main(
        args.bundle,
        seconds=args.seconds,
        concurrency=args.concurrency,
        batch=args.batch,
        malformed=args.malformed,
        workers=args.workers,
        slow_clients=args.slow_clients,
        coalesce=args.coalesce,
        baseline=args.baseline,
        baseline_coalesce=args.baseline_coalesce,
    )
    return EXIT_OK if result.server_errors == 0 else EXIT_STRICT


def _serve(args: argparse.Namespace) -> int:
    from serving.http import ServeOptions, serve

    options = ServeOptions(
        host=args.host,
        port=args.port,
        workers=args.workers,
        backlog=args.backlog,
        timeout_keep_alive=args.timeout_keep_alive,
        timeout_request=args.timeout_request,
        limit_concurrency=args.limit_concurrency,
        coalesce=args.coalesce,
    )
    serve(args.bundle, args.budget_file, options)
    return EXIT_OK


def _tune(args: argparse.Namespace) -> int:
    from models.train import PREDICTORS
    from models.tune import main

    which = PREDICTORS if args.predictor == "all" else (args.predictor,)
    main(
        which,
        params_file=args.params,
        trials=args.trials,
        track=not args.no_track,
        workers=args.workers,
        storage=args.storage,
    )
    return EXIT_OK


def _bench_train(args: argparse.Namespace) -> int:
    from benchmarks.train import main

    main(rows=args.rows, trials=args.trials, params_file=args.params)
    return EXIT_OK


def _bench_scale(args: argparse.Namespace) -> int:
    from benchmarks.scale import main

    main(
        rows=args.rows,
        workers=args.workers,
        trials=args.trials,
        tune_rows=args.tune_rows,
        storage=args.storage,
        work=args.work,
        out=args.out,
        params_file=args.params,
    )
    return EXIT_OK


def _bench_startup(args: argparse.Namespace) -> int:
    from benchmarks.startup import main

    extra = []
    if args.every_help:  # every command's --help, from the tree itself
        for name, sub in _commands(_parser()).items():
            leaves = _commands(sub)
            extra += [(name, leaf, "--help") for leaf in leaves] if leaves else [(name, "--help")]
    results = main(runs=args.runs, extra=extra, as_json=args.json)
    return EXIT_STRICT if any(r.exit_code for r in results) else EXIT_OK


def _gate(args: argparse.Namespace) -> int:
    from pipelines.promote import main

    decision = main(
        args.experiment,
        params_file=args.params,
        dry_run=args.dry_run,
        as_json=args.json,
        out_dir=args.out,
        bundle=args.bundle,
    )
    return EXIT_OK if decision.promote or args.dry_run else EXIT_STRICT


def _replay(args: argparse.Namespace) -> int:
    from evaluation.replay import main

    main(args.champion, args.challenger, args.traces, args.out, params_file=args.params, all_prompts=args.all_prompts)
    return EXIT_OK


def _retrain(args: argparse.Namespace) -> int:
    from pipelines.flows import configured_retrain

    params_file = str(args.params or "params.yaml")
    configured_retrain(params_file)(params_file)
    print("\nopen the UIs:  make mlflow-ui   (runs, registered beast-* models, aliases, beast-gate decisions)")
    print("               make prefect-server, then http://127.0.0.1:4200 (flow runs, the retrain-summary artifact)")
    return EXIT_OK


def _deploy(args: argparse.Namespace) -> int:
    from pipelines.deploy import main

    main(str(args.params or "params.yaml"))
    return EXIT_OK


def _rollback(args: argparse.Namespace) -> int:
    from pipelines.promote import rollback

    rollback(bundle=args.bundle, out_dir=args.out)
    return EXIT_OK


def _eval_routing(args: argparse.Namespace) -> int:
    from evaluation.routing import main, write_dvc_outputs

    report = main(
        args.traces,
        args.out,
        params_file=args.params,
        folds=args.folds,
        seed=args.seed,
        strong=args.strong,
        weak=args.weak,
        train_traces=args.train_traces,
    )
    if args.metrics is not None or args.plots is not None:  # only when asked: the dvc.yaml stage names these outputs
        files = write_dvc_outputs(report, args.metrics, args.plots)
        print(f"wrote {', '.join(str(p) for p in files.values())}")
    return EXIT_OK


def _feedback(args: argparse.Namespace) -> int:
    from traces.feedback import main

    main(args.path, params_file=args.params, dataset=args.out, quarantine=args.quarantine)
    return EXIT_OK


def _monitor_drift(args: argparse.Namespace) -> int:
    from monitoring.drift import main

    main(args.recent, params_file=args.params)
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from monitoring.report import main

    main(args.traces, params_file=args.params, out=args.out, bundle=args.bundle)
    return EXIT_OK


def _cache_tiers(args: argparse.Namespace) -> int:
    from caching.tiers import main

    main(
        args.traces,
        params_file=args.params,
        out=args.out,
        fast_capacities=args.fast,
        slow_capacities=args.slow,
        eval_from=args.eval_from,
        limit_rows=args.limit_rows,
    )
    return EXIT_OK


def _semantic_cache(args: argparse.Namespace) -> int:
    from caching.semantic import main

    main(params_file=args.params, traces=args.traces, out=args.out)
    return EXIT_OK


def _recommend(args: argparse.Namespace) -> int:
    from monitoring.recommend import main

    main(args.traces, bundle=args.bundle, params_file=args.params, out=args.out)
    return EXIT_OK


def _budget(args: argparse.Namespace) -> int:
    from monitoring.budget import backtest_main, status_main

    if args.action == "backtest":
        backtest_main(params_file=args.params, traces=args.traces or (), config=args.config, out=args.out)
    else:
        status_main(params_file=args.params, at=args.at, traces=args.traces or (), config=args.config, out=args.out)
    return EXIT_OK


def _cache_sim(args: argparse.Namespace) -> int:
    from caching.sim import main

    main(
        args.traces,
        params_file=args.params,
        capacities=args.capacity,
        policies=args.policy,
        eval_from=args.eval_from,
        out=args.out,
        limit_rows=args.limit_rows,
    )
    return EXIT_OK


def _cache_transfer(args: argparse.Namespace) -> int:
    from caching.transfer import main

    main(
        args.traces,
        regimes=args.regime,
        rows=args.rows,
        seed=args.seed,
        mean_rps=args.mean_rps,
        params_file=args.params,
        capacities=args.capacity,
        out=args.out,
        limit_rows=args.limit_rows,
    )
    return EXIT_OK


def _cache_prior(args: argparse.Namespace) -> int:
    from caching.prior import main

    main(
        regime=args.regime,
        rows=args.rows,
        seed=args.seed,
        mean_rps=args.mean_rps,
        params_file=args.params,
        out=args.out,
    )
    return EXIT_OK


def _stack(args: argparse.Namespace) -> int:
    from core.config import load_params
    from pipelines.stack import StackParams, down, exports, render_status, status, up, urls

    params = load_params(args.params, "stack", StackParams)
    if args.action == "up":
        u = up(params)
        print(
            f"\nstack up (state in {params.state}/):\n  optuna storage   {u.optuna_storage}\n  MLflow tracking  {u.mlflow_tracking}\n  Prefect API      {u.prefect_api}\nuse it from a shell:"
        )
        print(exports(u), end="")
    elif args.action == "down":
        print("\n".join(down(params)))
    elif args.action == "status":
        print(render_status(status(params)), end="")
    else:
        print(exports(urls(params)), end="")
    return EXIT_OK


def version_text() -> str:
    """`beast --version`: the package, the bundle schema it writes and reads, and the trace contract, one line each."""
    from importlib.metadata import PackageNotFoundError, version

    from serving.bundle import SCHEMA_VERSION
    from traces.contract import CONTRACT_VERSION

    try:
        package = version("beast-mode")
    except PackageNotFoundError:  # running from a source tree that was never installed
        package = "unknown (not installed)"
    return f"beast-mode {package}\nbundle schema_version {SCHEMA_VERSION}\ntrace contract v{CONTRACT_VERSION}"


class _Version(argparse.Action):
    """--version as argparse's own, but the text is built (and its modules imported) only when asked for."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(version_text())
        parser.exit()


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The commands under `parser` by name, in the order they were added ({} for a leaf command)."""
    return next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})


def _listing(title: str, rows: list[tuple[str, str]], column: int) -> str:
    """`rows` as argparse lists commands: name, then the text wrapped to the terminal with a hanging indent."""
    width = max(shutil.get_terminal_size().columns - 2, 60)
    lines = [title]
    for name, text in rows:
        lines.append(
            textwrap.fill(text, width, initial_indent=f"  {name:<{column}}", subsequent_indent=" " * (2 + column))
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="beast",
        usage="beast [-h] [-V] COMMAND ...",
        epilog="Run `beast COMMAND --help` (in a group: `beast GROUP COMMAND --help`) for the options and an example of each command.",
        formatter_class=fmt,
    )
    parser.add_argument(
        "-V", "--version", action=_Version, help="print the package, bundle schema and trace contract versions"
    )
    # argparse would list all commands in one flat section: the descriptions list them instead (set at the end)
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, help=argparse.SUPPRESS, prog="beast")
    groups: dict[str, argparse._SubParsersAction] = {}
    listed: dict[argparse._SubParsersAction, list[tuple[str, str]]] = {top: []}

    def command(
        where: argparse._SubParsersAction,
        name: str,
        short: str,
        summary: str,
        example: str,
        handler: Callable[[argparse.Namespace], int],
        sections: str = "",
    ) -> argparse.ArgumentParser:
        """A command under `where` (top level or a group): `short` is its line in the listing, `summary` its --help
        description; `sections` names the params.yaml sections it reads (then it takes --params)."""
        p = where.add_parser(name, description=summary, epilog=f"example:\n  {example}", formatter_class=fmt)
        p.set_defaults(handler=handler, command_path=p.prog.removeprefix("beast "))
        listed[where].append((name, short))
        if sections:
            p.add_argument(
                "--params", type=Path, help=f"params file, section(s) {sections} (default: ./params.yaml if present)"
            )
        return p

    def group(name: str) -> argparse._SubParsersAction:
        g = top.add_parser(
            name,
            usage=f"beast {name} [-h] COMMAND ...",
            epilog=f"Run `beast {name} COMMAND --help` for the options and an example of each command.",
            formatter_class=fmt,
        )
        groups[name] = g.add_subparsers(
            dest="subcommand", metavar="COMMAND", required=True, help=argparse.SUPPRESS, prog=f"beast {name}"
        )
        listed[groups[name]] = []
        return groups[name]

    def predictor_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "predictor",
            nargs="?",
            default="all",
            choices=("quality", "cost", "cache", "all"),
            help="which predictor (default: all)",
        )

    # the stage verbs, then the groups (in GROUPS order)
    p = command(
        top,
        "ingest",
        "Validate traces (contract v1), quarantine bad rows, store Parquet.",
        "Validate trace files against contract v1, quarantine bad rows with a reason, store the rest as Parquet. "
        "On a terminal, progress (file k of n, rows read) shows on stderr; piped, only the summary is printed.",
        "beast ingest data/sample/*.parquet data/sample/*.jsonl.gz --out data/traces",
        _ingest,
        "`ingest`",
    )
    p.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="trace files: .jsonl/.ndjson/.csv (optionally .gz) or .parquet (CSV: comma, semicolon or tab); a folder "
        "stands for the trace files directly in it, sorted by name (not its subfolders; hidden files skipped)",
    )
    p.add_argument(
        "--prices",
        type=Path,
        help="price table YAML used to cost rows without cost_usd (default: params.yaml ingest.prices)",
    )
    p.add_argument("--out", type=Path, help="dataset directory, partitioned by date (default: params.yaml ingest.out)")
    p.add_argument(
        "--quarantine", type=Path, help="directory for quarantined rows (default: params.yaml ingest.quarantine)"
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="store nothing and exit 1 if any row breaks the contract (the summary then says 0 stored; the quarantine "
        "file is still written)",
    )
    p.add_argument(
        "--ingest-id",
        help="name this ingest (files are named after it; must be new). Default: UTC time + random suffix",
    )
    p.add_argument(
        "--metrics",
        type=Path,
        metavar="FILE",
        help="also write the DVC metrics JSON (counts, cost, error rate) to FILE (default: not written; dvc.yaml passes data/metrics/ingest.json)",
    )

    p = command(
        top,
        "train",
        "Fit, evaluate and register the quality / cost / cache predictors.",
        "Fit, evaluate (held out, against baselines), save and register the quality / cost / cache predictors. "
        "On a terminal, the predictor being fitted (k of n) shows on stderr; piped, only the results are printed.",
        "beast train all            # or: beast train quality --traces data/traces --no-register",
        _train,
        "`train`, `features`, `dask`",
    )
    predictor_arg(p)
    p.add_argument(
        "--traces",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="dataset folders or trace files (default: params.yaml train.traces)",
    )
    p.add_argument("--no-register", action="store_true", help="write files and metrics but log nothing to MLflow")
    p.add_argument(
        "--engine",
        choices=("auto", "single", "dask"),
        help="where the cost predictor trains: in this process, on Dask (lightgbm.dask; params.yaml `dask` names the "
        "cluster, default a LocalCluster), or auto = Dask from dask.auto_rows stored rows (default: params.yaml dask.engine)",
    )

    p = command(
        top,
        "tune",
        "Optuna study per predictor, then default vs tuned.",
        "Optuna study per predictor (TPE + pruning, resumable storage), then default vs tuned on the test side. "
        "On a terminal, progress (trial k of n, pruned or not, best so far, seconds) shows on stderr; piped, only the verdicts are printed.",
        "beast tune cache --trials 30\n  beast tune cost --trials 40 --workers 2 --storage postgresql+psycopg2://beast@127.0.0.1:5433/optuna   # after `make stack`",
        _tune,
        "`tune`, `train`, `features`, `dask`",
    )
    predictor_arg(p)
    p.add_argument("--trials", type=int, help="trials to add to the study (default: params.yaml tune.trials)")
    p.add_argument(
        "--workers",
        type=int,
        help="Dask workers running trials at once on one shared study (default: params.yaml tune.workers; > 1 needs --storage on a server)",
    )
    p.add_argument(
        "--storage",
        help="Optuna storage URL (default: params.yaml tune.storage, SQLite); e.g. the PostgreSQL of `make stack`",
    )
    p.add_argument("--no-track", action="store_true", help="do not log trials to MLflow")

    p = command(
        top,
        "metrics",
        "Print each predictor's held-out metrics beside its baselines.",
        "Print each predictor's held-out metrics beside its baselines (from data/metrics/<predictor>.json).",
        "beast metrics",
        _metrics,
        "`train`",
    )
    p.add_argument("--folder", type=Path, help="metrics folder (default: params.yaml train.metrics)")

    p = command(
        top,
        "export",
        "Write the language-neutral router bundle and its .tar.gz.",
        "Write the language-neutral router bundle (models as LightGBM text + JSON, feature spec, policy, manifest with sha256) and its .tar.gz.",
        "beast export --alias champion --out bundle",
        _export,
    )
    p.add_argument("--alias", default="champion", help="registry alias to export (default: champion)")
    p.add_argument(
        "--from-dir",
        type=Path,
        help="export the unregistered files of one `beast train` run (e.g. data/models) instead of a registry alias",
    )
    p.add_argument(
        "--out", type=Path, required=True, help="bundle directory to create (its .tar.gz is written beside it)"
    )
    p.add_argument("--prices", type=Path, default=Path("data/prices.yaml"), help="price table for the candidate models")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle (atomically)")

    p = command(
        top,
        "route",
        "Route JSON-lines requests on stdin to decisions on stdout.",
        "Route requests: JSON lines on stdin ({prompt, input_tokens?, task?, timestamp?, request_id?}) -> one decision per line on stdout.",
        "beast route --bundle bundle < requests.jsonl > decisions.jsonl",
        _route,
    )
    p.add_argument(
        "--bundle",
        type=Path,
        required=True,
        help="bundle folder or .tar.gz written by `beast export` (verified on load)",
    )
    p.add_argument(
        "--budget-file",
        type=Path,
        help="route with the budget policy, paced by this remaining-budget file (format: serving/budget.py)",
    )

    p = command(
        top,
        "serve",
        "Serve POST /route, GET /health and GET /metrics (uvicorn, worker processes).",
        "Serve POST /route (JSON request or batch -> JSON decisions), GET /health and GET /metrics (Prometheus) with uvicorn worker processes; BEAST_ROUTER_TOKEN set: /route and /metrics need `Authorization: Bearer <token>`.",
        "beast serve --bundle bundle --port 8808 --workers 2",
        _serve,
    )
    p.add_argument("--bundle", type=Path, required=True, help="bundle folder or .tar.gz (verified on load)")
    p.add_argument(
        "--budget-file",
        type=Path,
        help="route with the budget policy, paced by this remaining-budget file (format: serving/budget.py)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only; another address without BEAST_ROUTER_TOKEN warns)",
    )
    p.add_argument("--port", type=int, default=8808, help="port (default: 8808; 0 = any free port)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes, each loading the bundle (state is per worker; default: 1)",
    )
    p.add_argument("--backlog", type=int, default=2048, help="listen backlog (default: 2048)")
    p.add_argument(
        "--timeout-keep-alive",
        type=float,
        default=5.0,
        help="seconds an idle keep-alive connection stays open (default: 5)",
    )
    p.add_argument(
        "--timeout-request",
        type=float,
        default=10.0,
        help="seconds to receive a whole request, headers and body, else 408 and close (slow clients; default: 10)",
    )
    p.add_argument(
        "--limit-concurrency",
        type=int,
        default=1024,
        help="connections + requests per worker; beyond it 503 at once (default: 1024)",
    )
    p.add_argument(
        "--coalesce",
        type=int,
        default=64,
        help="single-request POSTs waiting together in a worker are routed as one batch of up to this many (no "
        "added wait; same decisions; 1 = each alone; default: 64)",
    )

    p = command(
        top,
        "gate",
        "A/B promotion gate: on promote, the challenger becomes champion.",
        "A/B promotion gate: SRM, sample size, error-rate / quality / cost tests (Holm) on an experiment; on promote, champion -> challenger.",
        "beast gate --experiment data/experiments/ab.jsonl --dry-run --json",
        _gate,
        "`gate`, `train` (prices)",
    )
    p.add_argument(
        "--experiment",
        type=Path,
        required=True,
        help="contract-v1 trace file (or dataset folder) with a `variant` column",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="decide only: write no report and move no alias (exit 0 either way)"
    )
    p.add_argument("--json", action="store_true", help="print the decision as JSON (only the JSON on stdout)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("data/gate"),
        help="report folder for gate.md and gate.png (default: data/gate)",
    )
    p.add_argument(
        "--bundle",
        type=Path,
        default=Path("data/bundle"),
        help="champion bundle re-exported on promote (default: data/bundle)",
    )

    p = command(
        top,
        "rollback",
        "Undo (or redo) the last promotion and re-export the bundle.",
        "Swap the MLflow aliases champion and previous for every predictor (undo the last promotion; again = redo) and re-export the bundle.",
        "beast rollback",
        _rollback,
    )
    p.add_argument(
        "--bundle", type=Path, default=Path("data/bundle"), help="champion bundle to re-export (default: data/bundle)"
    )
    p.add_argument("--out", type=Path, default=Path("data/gate"), help="folder for rollback.md (default: data/gate)")
    command(
        top,
        "retrain",
        "Prefect flow: ingest, train, benchmark, export, replay, gate.",
        "Prefect flow: ingest -> train quality/cost/cache (challengers) -> routing benchmark -> export -> replay vs champion -> gate; resumes an unfinished run.",
        "beast retrain",
        _retrain,
        "`retrain`, `ingest`, `train`, `features`, `evaluate`, `gate`",
    )
    command(
        top,
        "deploy",
        "Schedule the retrain and monitor flows as Prefect deployments.",
        "Serve the retrain (cron) and monitor (interval) flows as Prefect deployments with the schedules in params.yaml; needs a Prefect server (make prefect-server).",
        "beast deploy",
        _deploy,
        "`retrain`",
    )

    p = command(
        top,
        "stack",
        "PostgreSQL + MLflow + Prefect on localhost: up, down, status, env.",
        "Local tracking stack: PostgreSQL (databases mlflow, prefect, optuna) + MLflow tracking server + Prefect server, state in stack.state (.stack/); `up` is idempotent, `down` leaves no process.",
        'beast stack up && eval "$(beast stack env)"   # later: beast stack status; beast stack down',
        _stack,
        "`stack`",
    )
    p.add_argument(
        "action",
        choices=("up", "down", "status", "env"),
        help="up: start what is not running and wait until healthy; down: stop everything; status: one line per component; env: the shell exports only",
    )

    traces = group("traces")
    p = command(
        traces,
        "import",
        "Convert a public raw data set into a committed contract-v1 sample.",
        "Convert a public raw data set (../shared/data) into a committed contract-v1 sample.",
        "beast traces import alpaca-eval ../shared/data/alpaca_eval --out data/sample",
        _import,
    )
    p.epilog = (p.epilog or "") + (
        "\n\nsources (rules: data/README.md):\n"
        "  alpaca-eval        AlpacaEval 2.0 annotations -> alpaca_eval.parquet (805 prompts x 14 models, judge quality)\n"
        "  mooncake           Mooncake conversation trace -> mooncake_conversation.jsonl.gz (tokens, prefix blocks)\n"
        "  azure              Azure LLM inference traces 2023 -> azure_{conv,code}.csv.gz (times, tokens)\n"
        "  prices             shared price table -> <out>/prices.yaml (use --out data), plus documented aliases\n"
        "  routellm-mmlu      RouteLLM MMLU folder (mmlu_<subject>.csv.gz) -> routellm_mmlu.parquet:\n"
        "                     one row per (question, model), quality 1 correct / 0 wrong, 1 output token\n"
        "  routellm-mt-bench  RouteLLM MT-Bench judgements (.jsonl.gz or its folder) -> routellm_mt_bench.parquet:\n"
        "                     one row per (question, turn, model), quality (score - 1) / 9"
    )
    p.add_argument(
        "source",
        choices=("alpaca-eval", "mooncake", "azure", "prices", "routellm-mmlu", "routellm-mt-bench"),
        help="which data set (see the list below)",
    )
    p.add_argument("src", nargs="?", help="raw data folder or file (default: the one under ../shared/data)")
    p.add_argument("--out", type=Path, default=Path("data/sample"), help="output directory (default: data/sample)")

    p = command(
        traces,
        "synth",
        "Write realistic synthetic traces.",
        "Write realistic synthetic traces (bursty arrivals, tenants, sessions, failures, latency tails).",
        "beast traces synth --rows 100000 --seed 7 --malformed 0.01 --out /tmp/traces.jsonl.gz",
        _synth,
        "`synth`",
    )
    p.add_argument("--rows", type=int, help="number of rows (default: params.yaml synth.rows)")
    p.add_argument("--seed", type=int, help="random seed (default: params.yaml synth.seed)")
    p.add_argument(
        "--malformed", type=float, help="fraction of rows to corrupt, one known problem each (JSONL and CSV)"
    )
    p.add_argument("--out", type=Path, required=True, help="output file: .jsonl, .csv (optionally .gz) or .parquet")
    p.add_argument("--prices", type=Path, default=Path("data/prices.yaml"), help="price table: the models to draw from")
    p.add_argument(
        "--prefix-regime",
        choices=("none", *PREFIX_REGIMES),
        help="prefix-sharing regime for cache studies (traces/synth.py PREFIX_REGIMES; default: synth.prefix_regime)",
    )

    command(
        traces,
        "contract",
        "Print trace contract v1 as Markdown.",
        "Print trace contract v1 as Markdown (the source of docs/trace-contract.md).",
        "beast traces contract > docs/trace-contract.md",
        _contract,
    )

    p = command(
        traces,
        "feedback",
        "Join ratings / judge scores to stored traces as quality labels.",
        "Join user ratings / judge scores (request_id, score in [0, 1], source, optional timestamp) to the stored traces as quality labels; bad rows quarantined.",
        "beast traces feedback ratings.jsonl --out data/traces",
        _feedback,
        "`ingest`",
    )
    p.add_argument(
        "path", type=Path, metavar="FILE", help="feedback file: .jsonl/.ndjson/.csv (optionally .gz) or .parquet"
    )
    p.add_argument("--out", type=Path, help="dataset directory to label (default: params.yaml ingest.out)")
    p.add_argument(
        "--quarantine", type=Path, help="directory for rejected feedback rows (default: params.yaml ingest.quarantine)"
    )

    evaluation = group("eval")
    p = command(
        evaluation,
        "routing",
        "Learned router vs baselines and the oracle on held-out prompts.",
        "Routing benchmark on prompts the predictors never saw (k-fold by prompt, or --train-traces: train on one data set, test on another): "
        "the learned router (each policy swept over knobs calibrated on the training side) vs random (200 seeds), always-one-model, per-model prior, kNN and the oracle; "
        "AIQ, APGR / CPT50 / CPT80 with bootstrap CIs, cost saved at >= 95 and 100 percent of the strong model's quality, regret.",
        "beast eval routing --traces data/sample/alpaca_eval.parquet --out data/bench\n"
        "  beast eval routing --traces data/sample/routellm_mt_bench.parquet --train-traces data/sample/routellm_mmlu.parquet --out /tmp/transfer",
        _eval_routing,
        "`evaluate`, `features`, `train.quality`, `train.cost`",
    )
    p.add_argument(
        "--traces",
        type=Path,
        required=True,
        help="contract-v1 file (.parquet/.jsonl/.csv, .gz) or dataset folder with quality labels and prompt_ids",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output folder: report.json, decisions.jsonl, report.md, cost_quality.png, pgr.png",
    )
    p.add_argument(
        "--train-traces",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="cross-dataset transfer: fit on these files (or dataset folders) and test on every prompt of --traces (prompt_ids must be disjoint); default: k-fold on --traces",
    )
    p.add_argument("--folds", type=int, help="group k-fold by prompt_id (default: params.yaml evaluate.folds)")
    p.add_argument(
        "--seed",
        type=int,
        help="seed of the folds, the random router and the bootstrap (default: params.yaml evaluate.seed)",
    )
    p.add_argument("--strong", help="strong model of the pair (default: highest mean logged quality)")
    p.add_argument("--weak", help="weak model of the pair (default: lowest mean cost)")
    p.add_argument(
        "--metrics",
        type=Path,
        metavar="FILE",
        help="also write the DVC metrics JSON (AIQ per router, APGR / CPT, savings; no timings) to FILE (default: not written; dvc.yaml passes data/metrics/bench.json)",
    )
    p.add_argument(
        "--plots",
        type=Path,
        metavar="DIR",
        help="also write the DVC plot data (cost_quality.csv, pgr.csv, aiq.csv) into DIR (default: not written; dvc.yaml passes data/plots/bench)",
    )

    p = command(
        evaluation,
        "replay",
        "Offline A/B of two bundles on the same prompts, for `beast gate`.",
        "Offline A/B: route the same held-out prompts with two bundles, score each choice with its logged answer; writes an experiment for `beast gate` (paired tests).",
        "beast eval replay --champion data/bundle --challenger /tmp/new-bundle --traces data/sample/alpaca_eval.parquet --out data/experiments/replay.jsonl",
        _replay,
        "`train` (prices, quality split)",
    )
    p.add_argument("--champion", type=Path, required=True, help="bundle folder or .tar.gz of the current router")
    p.add_argument("--challenger", type=Path, required=True, help="bundle folder or .tar.gz of the candidate router")
    p.add_argument(
        "--traces",
        type=Path,
        required=True,
        help="contract-v1 file (or dataset folder) where prompts were answered by several models, with quality labels",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="experiment file to write (contract-v1 JSONL, variant = champion / challenger)",
    )
    p.add_argument(
        "--all-prompts", action="store_true", help="replay every prompt, not only the quality predictor's held-out ones"
    )

    monitor = group("monitor")
    p = command(
        monitor,
        "drift",
        "Drift of recent traces vs the training data, per model: reports only.",
        "Drift of recent traces against the training data, per model (each model's last monitor.window_hours against its own older rows: PSI + KS per feature, error-rate and cost shifts) and whether a retrain is recommended. It only reports: the Prefect `monitor` flow (beast deploy) is what runs the retrain.",
        "beast monitor drift         # or: beast monitor drift recent.jsonl.gz",
        _monitor_drift,
        "`monitor`",
    )
    p.add_argument(
        "recent",
        nargs="?",
        type=Path,
        metavar="FILE",
        help="recent traces to check (default: the dataset's last monitor.window_hours)",
    )

    p = command(
        monitor,
        "report",
        "Monitoring report: one self-contained index.html + report.json.",
        "Monitoring report: one self-contained index.html (plots inlined, opens offline) + report.json: traffic, errors, latency, cost, cached-token savings, quality, budgets, champion predicted vs actual, recommendations, drift.",
        "beast monitor report data/traces --out data/report      # or trace files: beast monitor report data/sample/*.csv.gz",
        _report,
        "`report`, `monitor`, `budget`",
    )
    p.add_argument(
        "traces",
        nargs="+",
        type=Path,
        metavar="TRACES",
        help="dataset folders (as stored by ingest) or trace files (validated through a throwaway ingest)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="output folder for index.html, report.json and plots/ (default: params.yaml report.out)",
    )
    p.add_argument(
        "--bundle",
        type=Path,
        help="champion bundle for predicted vs actual and recommendations (default: report.bundle, data/bundle)",
    )

    p = command(
        monitor,
        "budget",
        "Budgets: spend, forecast and alerts (status), or a backtest.",
        "Cost ledger and budgets: `status` = spend, remaining, forecast end-of-period spend with an interval, alerts, and a remaining-budget file per budget for routers; `backtest` = forecast error on the Azure traces.",
        "beast monitor budget status --at 2023-11-16T18:45:00Z --traces data/sample/azure_conv.csv.gz data/sample/azure_code.csv.gz --out data/budget-replay",
        _budget,
        "`budget`",
    )
    p.add_argument(
        "action", nargs="?", default="status", choices=("status", "backtest"), help="what to do (default: status)"
    )
    p.add_argument(
        "--at",
        help="status as of this time, RFC 3339 (default: now); later rows are ignored. A budget whose period has "
        "ended before now is a read-only replay: printed and in status.json, its budget-state file is not written",
    )
    p.add_argument(
        "--traces",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="dataset folder or trace files (default: params.yaml budget.traces; backtest: budget.backtest_traces)",
    )
    p.add_argument("--config", type=Path, help="budgets YAML (default: params.yaml budget.config)")
    p.add_argument(
        "--out",
        type=Path,
        help="output folder for status.json, *.budget-state.json, backtest.json (default: params.yaml budget.out)",
    )
    p = command(
        monitor,
        "recommend",
        "What-if savings: cheaper models within a quality drop, USD/day.",
        "What-if savings from the champion predictors: per tenant / task / prompt size / model, the move to a cheaper model within a quality drop, ranked by USD per day.",
        "beast monitor recommend data/sample/alpaca_eval.parquet --out data/recommend",
        _recommend,
        "`recommend`, `train`",
    )
    p.add_argument(
        "traces",
        nargs="*",
        type=Path,
        metavar="TRACE",
        help="trace files or dataset folders (default: params.yaml train.traces)",
    )
    p.add_argument("--bundle", type=Path, default=Path("data/bundle"), help="champion bundle (default: data/bundle)")
    p.add_argument(
        "--out",
        type=Path,
        help="output folder for recommendations.json and recommendations.md (default: recommend.out)",
    )

    cache = group("cache")
    p = command(
        cache,
        "sim",
        "Prefix-cache policies on a trace: hit ratio, tokens saved.",
        "Replay a trace's prompt-prefix blocks through cache policies (libCacheSim LRU/LFU/FIFO/S3-FIFO/ARC, learned, Belady): hit ratio, tokens saved, curve.",
        "beast cache sim data/sample/mooncake_conversation.jsonl.gz --capacity 500 2000 8000 --policy lru s3fifo learned belady --out data/cache_sim",
        _cache_sim,
        "`cache_sim`, `train`",
    )
    p.add_argument(
        "traces",
        nargs="+",
        type=Path,
        metavar="TRACE",
        help="trace files or dataset folders with prefix_blocks, or Mooncake traces as published (hash_ids)",
    )
    p.add_argument(
        "--capacity", type=int, nargs="+", help="cache capacities in blocks (default: params.yaml cache_sim.capacities)"
    )
    p.add_argument(
        "--policy",
        nargs="+",
        choices=("lru", "lfu", "fifo", "s3fifo", "arc", "learned", "online", "guarded", "belady"),
        help="policies (default: params.yaml cache_sim.policies)",
    )
    p.add_argument(
        "--eval-from",
        type=float,
        help="count lookups from this share of the time range on (default: cache_sim.eval_from, 0.5)",
    )
    p.add_argument(
        "--out", type=Path, help="output folder for cache_report.json and cache_sim.png (default: cache_sim.out)"
    )
    p.add_argument("--limit-rows", type=int, help="only the first N requests (by time) of the trace")

    p = command(
        cache,
        "transfer",
        "Train a cache policy on one trace, test on another: every pair.",
        "Train the learned prefix-cache policy on each trace and test it on each other trace (trace files and seeded prefix regimes): LRU/ARC/S3-FIFO/learned/online/guarded/Belady hit ratios, gap closed, lookups/s.",
        "beast cache transfer data/sample/mooncake_conversation.jsonl.gz --regime system multiturn toolloop oneoff --out data/cache_transfer",
        _cache_transfer,
        "`cache_sim`",
    )
    p.add_argument(
        "traces", nargs="*", type=Path, help="trace files, dataset folders or published Mooncake traces (optional)"
    )
    p.add_argument(
        "--regime",
        nargs="*",
        default=["system", "multiturn", "toolloop", "oneoff"],
        choices=PREFIX_REGIMES,
        help="synthetic prefix regimes to add (traces/synth.py; default: system multiturn toolloop oneoff)",
    )
    p.add_argument("--rows", type=int, default=3000, help="requests per regime (default: 3000)")
    p.add_argument("--seed", type=int, default=0, help="regime seed (default: 0)")
    p.add_argument(
        "--mean-rps", type=float, default=2.0, help="regime arrival rate, requests/s (default: 2; sets the time scale)"
    )
    p.add_argument("--capacity", type=int, nargs="+", help="capacities in blocks (default: cache_sim.capacities)")
    p.add_argument("--limit-rows", type=int, help="first N requests of each trace file by time")
    p.add_argument(
        "--out", type=Path, default=Path("data/cache_transfer"), help="output folder (default: data/cache_transfer)"
    )

    p = command(
        cache,
        "prior",
        "Fit the online cache expert's prior on a synthetic trace.",
        "Fit the survival model the online cache expert starts from (before its first refit beats it on held-out lookups) on a seeded synthetic prefix regime no scored trace uses; write LightGBM text + a manifest with provenance and sha256 (what params.yaml cache_sim.online.prior names).",
        "beast cache prior --regime mixture --rows 3000 --seed 100 --out data/cache_prior",
        _cache_prior,
        "`cache_sim`",
    )
    p.add_argument(
        "--regime",
        default="mixture",
        choices=PREFIX_REGIMES,
        help="synthetic prefix regime (traces/synth.py; default: mixture)",
    )
    p.add_argument("--rows", type=int, default=3000, help="requests (default: 3000)")
    p.add_argument("--seed", type=int, default=100, help="regime seed (default: 100; the README scores seeds 0-3)")
    p.add_argument("--mean-rps", type=float, default=2.0, help="arrival rate, requests/s (default: 2)")
    p.add_argument(
        "--out", type=Path, default=Path("data/cache_prior"), help="output folder (default: data/cache_prior)"
    )

    p = command(
        cache,
        "tiers",
        "Two-tier prefix cache: hit ratio per tier, latency saved.",
        "Two-tier prefix-block cache (small fast + large slow exclusive LRU tiers): hit ratio per tier, expected latency per block lookup and latency saved vs no cache (illustrative latencies), curve.",
        "beast cache tiers data/sample/mooncake_conversation.jsonl.gz --fast 0 250 1000 --slow 0 4000 16000 --out data/cache_tiers",
        _cache_tiers,
        "`cache_tiers`, `train`",
    )
    p.add_argument(
        "traces",
        nargs="+",
        type=Path,
        metavar="TRACE",
        help="trace files or dataset folders with prefix_blocks, or Mooncake traces as published (hash_ids)",
    )
    p.add_argument(
        "--fast",
        type=int,
        nargs="+",
        help="fast-tier capacities in blocks (default: params.yaml cache_tiers.fast_capacities)",
    )
    p.add_argument(
        "--slow",
        type=int,
        nargs="+",
        help="slow-tier capacities in blocks (default: params.yaml cache_tiers.slow_capacities)",
    )
    p.add_argument(
        "--eval-from",
        type=float,
        help="count lookups from this share of the time range on (default: cache_tiers.eval_from, 0.5)",
    )
    p.add_argument(
        "--out", type=Path, help="output folder for tiers_report.json and cache_tiers.png (default: cache_tiers.out)"
    )
    p.add_argument("--limit-rows", type=int, help="only the first N requests (by time) of the trace")

    p = command(
        cache,
        "semantic",
        "Semantic response cache: hit rate vs false hits per threshold.",
        "Semantic (nearest-neighbour) response cache on real prompts: hit rate on seeded rewrites, false hits on held-out prompts, per threshold; picks the threshold within the false-hit budget.",
        "beast cache semantic data/sample/alpaca_eval.parquet --out data/semantic_cache",
        _semantic_cache,
        "`semantic_cache`",
    )
    p.add_argument(
        "traces",
        nargs="*",
        type=Path,
        metavar="FILE",
        help="prompt files (Parquet with a `prompt` column, or trace files; default: semantic_cache.data)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="output folder for semantic_report.json and semantic_cache.png (default: semantic_cache.out)",
    )

    bench = group("bench")
    p = command(
        bench,
        "ingest",
        "Ingest N synthetic rows vs a plain pyarrow read + write.",
        "Benchmark: ingest N synthetic rows and print rows/s next to a plain pyarrow read + write of the same file.",
        "beast bench ingest --rows 1000000 --format jsonl",
        _bench_ingest,
    )
    p.add_argument("--rows", type=int, default=1_000_000, help="rows to generate (default: 1,000,000)")
    p.add_argument(
        "--format", choices=("jsonl", "csv", "parquet"), default="jsonl", help="file format (default: jsonl)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")

    p = command(
        bench,
        "train",
        "Features + 3 predictors + Optuna trials on N rows vs 10 minutes.",
        "Benchmark: features + 3 predictors + N Optuna trials each on the samples scaled to N rows, vs the 10-minute goal.",
        "beast bench train --rows 100000 --trials 30",
        _bench_train,
        "`train`, `features`, `tune`",
    )
    p.add_argument(
        "--rows", type=int, default=100_000, help="rows after scaling the committed samples (default: 100,000)"
    )
    p.add_argument("--trials", type=int, default=30, help="Optuna trials per predictor (default: 30)")

    p = command(
        bench,
        "route",
        "route() latency p50 / p99 vs a raw Booster.predict.",
        "Benchmark: route() latency p50 / p99 over real prompts next to a raw Booster.predict of the same rows.",
        "beast bench route --bundle bundle",
        _bench_route,
    )
    p.add_argument("--bundle", type=Path, required=True, help="bundle folder or .tar.gz")
    p.add_argument("--requests", type=int, default=800, help="distinct AlpacaEval prompts to route (default: 800)")

    p = command(
        bench,
        "serve",
        "`beast serve` under wrk load: clean, then malformed + slow clients.",
        "Benchmark: `beast serve` in a second process under wrk (needs wrk: apt-get install -y wrk): a clean run, then the same load with malformed POSTs and slow clients: decisions/s, p50/p95/p99, errors.",
        "beast bench serve --bundle data/bundle --seconds 10 --concurrency 16 --workers 2",
        _bench_serve,
    )
    p.add_argument("--bundle", type=Path, required=True, help="bundle folder or .tar.gz")
    p.add_argument("--seconds", type=float, default=10.0, help="duration of each run (default: 10)")
    p.add_argument("--concurrency", type=int, default=16, help="wrk keep-alive connections (default: 16)")
    p.add_argument("--workers", type=int, default=2, help="`beast serve --workers` (default: 2)")
    p.add_argument(
        "--slow-clients", type=int, default=50, help="connections dribbling a body in the hostile run (default: 50)"
    )
    p.add_argument(
        "--baseline",
        type=Path,
        help="a module file with make_server(router, host, port) (e.g. the old ThreadingHTTPServer module) measured first",
    )
    p.add_argument("--batch", type=int, default=1, help="requests per POST (a JSON array when > 1; default: 1)")
    p.add_argument(
        "--malformed", type=float, default=0.05, help="share of broken POSTs, which must get 4xx (default: 0.05)"
    )
    p.add_argument(
        "--coalesce",
        type=int,
        default=64,
        help="`beast serve --coalesce`: single POSTs routed together at most (1 = each alone; default: 64)",
    )
    p.add_argument(
        "--baseline-coalesce",
        type=int,
        help="measure `beast serve --coalesce K` first (a clean run) and print the ratio against it (e.g. 1)",
    )

    p = command(
        bench,
        "scale",
        "Cost training: one process vs Dask; Optuna on 1 vs 2 workers.",
        "Benchmark: cost predictor features + training in one process vs on Dask (wall, peak memory, metrics), and Optuna trials/min on 1 vs 2 Dask workers.",
        "beast bench scale --rows 2000000 --workers 2 --trials 12   # about 5-10 min on 2 idle cores; --rows 200000: ~1.5 min",
        _bench_scale,
        "`train`, `dask`, `tune`",
    )
    p.description += (
        "\n\nData: --rows synthetic rows (seed 0) are ingested into --work/traces (reused on a rerun; not timed in the comparison)."
        "\nTraining: `beast train cost` on each engine, each in a fresh subprocess; the parent samples the summed RSS of the"
        "\nsubprocess and all its descendants (Dask nanny + workers) every 0.1 s. Dask's time includes starting the LocalCluster."
        "\nEvery model is on the time split (synthetic rows rarely carry a prompt_id), so alpaca.* metrics are empty."
        "\nOptuna: the cost tuning problem on a --tune-rows sample, --trials trials on 1 then 2 Dask workers sharing a fresh"
        "\nstudy (as `beast tune --workers N`), timed from submit to gather; needs the PostgreSQL of `make stack` (skipped"
        "\nwith a message when it is not reachable). Benchmark studies are deleted afterwards. Results: --out (JSON)."
    )
    p.add_argument("--rows", type=int, default=2_000_000, help="synthetic rows to ingest (default: 2,000,000)")
    p.add_argument("--workers", type=int, default=2, help="Dask workers of the training run (default: 2)")
    p.add_argument("--trials", type=int, default=12, help="Optuna trials per worker count (default: 12)")
    p.add_argument(
        "--tune-rows",
        type=int,
        default=200_000,
        help="rows sampled from the dataset for the tuning problem (default: 200,000)",
    )
    p.add_argument(
        "--storage",
        default="postgresql+psycopg2://beast@127.0.0.1:5433/optuna",
        help="Optuna storage shared by the workers (default: the PostgreSQL of `make stack`)",
    )
    p.add_argument(
        "--work",
        type=Path,
        help="folder for the dataset, logs and per-mode results, reused on a rerun (default: a temporary folder)",
    )
    p.add_argument(
        "--out", type=Path, default=Path("/tmp/bench_scale.json"), help="results JSON (default: /tmp/bench_scale.json)"
    )

    p = command(
        bench,
        "startup",
        "`beast` start-up time per command vs `python -c pass`.",
        "Benchmark: start-up time of `beast --help`, `--version`, `metrics`, `traces contract` and `route --help` "
        "(median of --runs fresh processes each, interleaved), as a ratio to `python -c pass` in the same run; goal < 1 s. "
        "Exit 1 if a measured command fails.",
        "beast bench startup --runs 7            # or: beast bench startup --every-help --json",
        _bench_startup,
    )
    p.add_argument("--runs", type=int, default=7, help="timed runs per command, after one warm-up (default: 7)")
    p.add_argument("--every-help", action="store_true", help="also time `<command> --help` for every command")
    p.add_argument("--json", action="store_true", help="print the results as JSON (only the JSON on stdout)")

    for name, sub in groups.items():
        top.choices[
            name
        ].description = (
            f"{GROUPS[name][1]}\n\n{_listing('commands:', listed[sub], max(len(n) for n, _ in listed[sub]) + 2)}"
        )
    rows = [(name, f"{GROUPS[name][0]}: {' | '.join(n for n, _ in listed[groups[name]])}") for name in GROUPS]
    column = max(len(name) for name, _ in listed[top] + rows) + 2
    parser.description = "\n\n".join(
        (
            "The learning side of an LLM model router: traces in, predictors, A/B gate, export bundle.",
            _listing("commands:", listed[top], column),
            _listing("command groups (`beast GROUP --help` lists a group's commands):", rows, column),
        )
    )
    return parser


def _resolve_alias(argv: list[str], commands: dict[str, argparse.ArgumentParser]) -> list[str]:
    """`argv` with an old command name (ALIASES) replaced by its new path, noted in one line on stderr. An old name
    that is now a group too keeps its old meaning unless the next word is one of the group's commands or -h/--help."""
    if not argv or argv[0] not in ALIASES:
        return argv
    old, rest = argv[0], argv[1:]
    if old in commands and rest and (rest[0] in _commands(commands[old]) or rest[0] in ("-h", "--help")):
        return argv
    new = ALIASES[old]
    print(f"beast: `{old}` is now `beast {' '.join(new)}` (the old name goes in 0.2)", file=sys.stderr)
    return [*new, *rest]


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(_resolve_alias(list(sys.argv[1:] if argv is None else argv), _commands(parser)))
    try:
        return args.handler(args)
    except BeastError as exc:
        print(f"beast {args.command_path}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # a write the file system refused (disk full, read-only, ...) that no stage named
        from core.files import WRITE_ERRNOS, os_reason

        if exc.errno not in WRITE_ERRNOS:
            raise
        print(f"beast {args.command_path}: error: {exc.filename or 'a file'}: {os_reason(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"beast {args.command_path}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

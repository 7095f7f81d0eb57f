"""The ``d365kit`` command."""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from d365kit.sandbox.context import LIMIT_PROFILES

if TYPE_CHECKING:
    from d365kit.report import RunResult

# Connection facts printed by `d365kit sandbox env`, as environment variable -> fact key.
ENV_EXPORTS = {
    "D365KIT_SANDBOX_DIR": "data_dir",
    "D365KIT_AUTHORITY": "authority",
    "D365KIT_TENANT_ID": "tenant_id",
    "D365KIT_CLIENT_ID": "client_id",
    "D365KIT_CLIENT_SECRET": "client_secret",
    "D365KIT_CLIENT_CERTIFICATE": "client_certificate",
    "D365KIT_CLIENT_CERTIFICATE_KEY": "client_certificate_key",
    "D365KIT_CLIENT_CERTIFICATE_THUMBPRINT": "client_certificate_thumbprint",
    "D365KIT_BC_URL": "bc_url",
    "D365KIT_BC_COMPANION_URL": "bc_companion_url",
    "D365KIT_BC_ENVIRONMENT": "environment",
    "D365KIT_BC_SCOPE": "bc_scope",
    "D365KIT_DATAVERSE_URL": "dataverse_url",
    "D365KIT_DATAVERSE_API_URL": "dataverse_api_url",
    "D365KIT_DATAVERSE_SCOPE": "dataverse_scope",
    "D365KIT_CA_BUNDLE": "ca_bundle",
}


def _data_dir(args: argparse.Namespace) -> Path:
    from d365kit.sandbox.server import default_data_dir

    return Path(args.data_dir).expanduser() if args.data_dir else default_data_dir()


def _scale(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("--scale must be a positive number of customers, e.g. --scale 1000")
    return value


def cmd_sandbox_start(args: argparse.Namespace) -> int:
    from d365kit.sandbox.server import Sandbox, read_running, seed_store
    from d365kit.sandbox.store import Store

    data_dir = _data_dir(args)
    running = read_running(data_dir)
    if running:
        print(
            f"A sandbox already runs on {data_dir} (pid {running['pid']}, port {running['port']}).\n"
            "Stop it first, or start another with --data-dir <other folder>.",
            file=sys.stderr,
        )
        return 1
    if args.scale is not None:
        seed_store(Store(data_dir / "sandbox.db"), data_dir, scale=args.scale)
    sbx = Sandbox(data_dir, port=args.port, limits=args.limits, latency_ms=args.latency_ms)
    print(f"Starting the sandbox on https://127.0.0.1:{args.port or '<free port>'} (data: {data_dir}) ...")
    sbx.on_started = lambda: print(  # noqa: E731 - printed once the port is known
        f'Sandbox ready at {sbx.ctx.origin}. In another shell: eval "$(d365kit sandbox env)". Ctrl+C stops it.',
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        sbx.serve_forever()
    return 0


def cmd_sandbox_seed(args: argparse.Namespace) -> int:
    from d365kit.sandbox.server import seed_store
    from d365kit.sandbox.store import Store

    data_dir = _data_dir(args)
    manifest = seed_store(Store(data_dir / "sandbox.db"), data_dir, scale=args.scale)
    print(
        f"Seeded {data_dir} (scale {manifest.get('scale')}): {len(manifest.get('problems', []))} planted problems."
    )
    return 0


def cmd_sandbox_reset(args: argparse.Namespace) -> int:
    from d365kit.sandbox.server import MANIFEST_FILE, seed_store
    from d365kit.sandbox.store import Store

    data_dir = _data_dir(args)
    scale = None
    manifest_path = data_dir / MANIFEST_FILE
    if manifest_path.exists():
        scale = json.loads(manifest_path.read_text()).get("scale")
    manifest = seed_store(Store(data_dir / "sandbox.db"), data_dir, scale=scale)
    print(f"Reset {data_dir} to its seeded state (scale {manifest.get('scale')}).")
    return 0


def cmd_sandbox_env(args: argparse.Namespace) -> int:
    from d365kit.sandbox.server import read_running

    data_dir = _data_dir(args)
    facts = read_running(data_dir)
    if facts is None:
        print(
            f"No sandbox is running on {data_dir}. Start one with `d365kit sandbox start` "
            "(or pass the --data-dir of a running one).",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps({k: v for k, v in facts.items() if k not in ("pid", "admin_key")}, indent=2))
    else:
        for var, key in ENV_EXPORTS.items():
            print(f"export {var}={shlex.quote(str(facts[key]))}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from d365kit.doctor import Doctor, render

    findings = Doctor(args.profile).run()
    print(render(findings))
    return 0 if all(f.ok for f in findings) else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from d365kit.demo import run_demo

    return run_demo(Path(args.data_dir) if args.data_dir else None, Path(args.out) if args.out else None)


def _print_run(result: RunResult) -> None:
    print(result.describe(), file=sys.stdout if result.ok else sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from d365kit.report import default_out_dir, parse_value, run_notebook

    parameters = {name: parse_value(value) for name, value in args.parameter}
    if args.profile:
        parameters["profile"] = args.profile
    try:
        result = run_notebook(args.notebook, Path(args.out) if args.out else default_out_dir(), parameters)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    _print_run(result)
    return 0 if result.ok else 1


def cmd_report(args: argparse.Namespace) -> int:
    from d365kit.report import build_report, parse_value

    parameters = {name: parse_value(value) for name, value in args.parameter}
    try:
        report = build_report(args.notebooks, args.out, parameters, args.profile)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    for result in report.results:
        _print_run(result)
    print(report.index)
    return 0 if report.ok else 1


def cmd_bench(args: argparse.Namespace) -> int:
    """Benchmarks live in the source checkout's ``bench/`` (next to this package), not in the wheel."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "bench" / "runner.py").exists():
        print(
            f"`d365kit bench` runs from a source checkout of d365kit: no bench/runner.py in {root}. "
            "Clone the repository and run `make bench` there.",
            file=sys.stderr,
        )
        return 2
    sys.path.insert(0, str(root))
    from bench.runner import RESULTS, run_benchmarks

    return run_benchmarks(
        args.only, repeats=args.repeats, results=Path(args.results) if args.results else RESULTS
    )


def _journal(args: argparse.Namespace) -> Path:
    from d365kit.sync import default_path

    return Path(args.journal).expanduser() if args.journal else default_path(args.profile)


def _confirmed(ws: object, exc: Exception) -> bool:
    """A production target without --yes: on a terminal, ask for the environment's name typed out."""
    if not sys.stdin.isatty():
        return False
    environment = ws.profile.bc_environment  # type: ignore[attr-defined]
    print(exc, file=sys.stderr)
    answer = input(f"Type the BC environment's name ({environment}) to write there, anything else to stop: ")
    return answer.strip() == environment


def _sync_write(args: argparse.Namespace, write: object) -> int:
    """Run ``write(ws, confirm)`` (an apply or a resume) and report it; exit 2 when refused (another target,
    no confirmation), 3 when another run holds a lock."""
    import d365kit
    from d365kit.errors import ConfirmationRequired, SyncLockedError, SyncPlanError

    ws = d365kit.connect(args.profile)
    try:
        try:
            run = write(ws, args.yes)  # type: ignore[operator]
        except ConfirmationRequired as exc:
            if not _confirmed(ws, exc):
                print(f"{exc}\nNothing was written.", file=sys.stderr)
                return 2
            run = write(ws, True)  # type: ignore[operator]
    except SyncLockedError as exc:
        print(exc, file=sys.stderr)
        return 3
    except SyncPlanError as exc:
        print(exc, file=sys.stderr)
        return 2
    finally:
        ws.close()
    print(f"run {run.run_id}: " + ", ".join(f"{k} {v}" for k, v in run.counts.items()))
    states = run.operations["state"].value_counts()
    print("operations: " + ", ".join(f"{state} {n}" for state, n in states.items()))
    for warning in run.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0 if run.ok else 1


def cmd_sync_apply(args: argparse.Namespace) -> int:
    """Apply a plan saved with ``SyncPlan.save`` (on the target it was made on)."""
    from d365kit.sync import SyncPlan

    plan = SyncPlan.load(args.plan)
    return _sync_write(
        args,
        lambda ws, confirm: ws.apply(
            plan,
            journal=_journal(args),
            progress=not args.quiet,
            confirm=confirm,
            wait=args.wait,
            stale=args.stale,
        ),
    )


def cmd_sync_resume(args: argparse.Namespace) -> int:
    """Finish a journaled sync run (killed, or with operations left to retry)."""
    return _sync_write(
        args,
        lambda ws, confirm: ws.resume(
            args.run_id,
            journal=_journal(args),
            progress=not args.quiet,
            confirm=confirm,
            wait=args.wait,
            stale=args.stale,
        ),
    )


def cmd_sync_runs(args: argparse.Namespace) -> int:
    """The journaled runs, newest first."""
    from d365kit.sync import Journal

    path = _journal(args)
    if not path.exists():
        print(f"no journal at {path}", file=sys.stderr)
        return 1
    with Journal(path) as journal:
        runs = journal.list_runs()
    print(runs.to_string(index=False) if len(runs) else f"no runs in {path}")
    return 0


def _repeats(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("--repeats must be at least 1 (the recorded figures use 5 or more)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="d365kit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def data_dir_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--data-dir",
            help="sandbox data folder (default: $D365KIT_SANDBOX_DIR, else ~/.local/share/d365kit/sandbox)",
        )

    sandbox = sub.add_parser("sandbox", help="the local Entra ID + Business Central + Dataverse emulator")
    ssub = sandbox.add_subparsers(dest="sandbox_command", required=True)

    start = ssub.add_parser("start", help="run the sandbox in the foreground")
    start.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    data_dir_arg(start)
    start.add_argument("--scale", type=_scale, help="reseed with N customers (the rest in proportion) first")
    start.add_argument(
        "--limits", choices=LIMIT_PROFILES, default="unlimited", help="service protection profile"
    )
    start.add_argument("--latency-ms", type=float, default=0.0, help="latency added to every API request")
    start.set_defaults(func=cmd_sandbox_start)

    seed = ssub.add_parser("seed", help="replace the data with a fresh deterministic seed")
    seed.add_argument("--scale", type=_scale, help="N customers, the rest in proportion (default: demo size)")
    data_dir_arg(seed)
    seed.set_defaults(func=cmd_sandbox_seed)

    reset = ssub.add_parser("reset", help="restore the seeded state (same scale)")
    data_dir_arg(reset)
    reset.set_defaults(func=cmd_sandbox_reset)

    env = ssub.add_parser("env", help="connection facts of the running sandbox (shell exports, or --json)")
    data_dir_arg(env)
    env.add_argument("--json", action="store_true", help="print JSON instead of shell exports")
    env.set_defaults(func=cmd_sandbox_env)

    demo = sub.add_parser(
        "demo", help="the main job: sandbox, round trip, the four notebooks headlessly, the HTML report"
    )
    demo.add_argument(
        "--data-dir",
        help="use (or attach to) the sandbox on this folder (default: a fresh one in a temp folder)",
    )
    demo.add_argument("--out", help="report folder (default: reports/<UTC timestamp>/)")
    demo.set_defaults(func=cmd_demo)

    def parameter_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-p",
            "--parameter",
            nargs=2,
            action="append",
            default=[],
            metavar=("NAME", "VALUE"),
            help="a notebook parameter (Python literal or text), e.g. -p days 7 -p mappings \"['CUSTOMER']\"",
        )

    run = sub.add_parser("run", help="execute one notebook headlessly (papermill) and export it as HTML")
    run.add_argument("notebook", help="the .ipynb to run, e.g. notebooks/04_sync_health.ipynb")
    parameter_arg(run)
    run.add_argument("--profile", help="profile name passed to the notebook (default: the notebook's own)")
    run.add_argument("--out", help="output folder (default: reports/<UTC timestamp>/)")
    run.set_defaults(func=cmd_run)

    report = sub.add_parser("report", help="run the notebooks and write an HTML report with an index page")
    report.add_argument(
        "--profile", default="sandbox", help="profile name passed to every notebook (default: sandbox)"
    )
    report.add_argument("--out", help="output folder (default: reports/<UTC timestamp>/)")
    report.add_argument(
        "--notebooks", nargs="+", help="notebooks to run, in order (default: notebooks/*.ipynb)"
    )
    parameter_arg(report)
    report.set_defaults(func=cmd_report)

    doctor = sub.add_parser(
        "doctor", help="check a profile: tokens, reachability, read permission, companion API"
    )
    doctor.add_argument("--profile", default="sandbox", help="profile name (default: sandbox)")
    doctor.set_defaults(func=cmd_doctor)

    sync = sub.add_parser(
        "sync", help="selective sync runs: apply a saved plan, resume an interrupted run, list the runs"
    )
    ysub = sync.add_subparsers(dest="sync_command", required=True)

    def journal_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--profile", default="sandbox", help="profile name (default: sandbox)")
        p.add_argument(
            "--journal",
            help="journal file (default: $D365KIT_JOURNAL, else ~/.local/share/d365kit/journal/<profile>.sqlite)",
        )

    def write_args(p: argparse.ArgumentParser) -> None:
        journal_args(p)
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument(
            "--yes",
            action="store_true",
            help="write to a production target (the profile says production = true, or its BC environment is "
            "not a sandbox) without asking",
        )
        p.add_argument(
            "--wait",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="wait this long for another run writing the same mappings (default: refuse at once)",
        )
        p.add_argument(
            "--stale",
            choices=("stop", "current"),
            default="stop",
            help="a source changed after planning: leave it stale (default) or write its current values",
        )

    apply = ysub.add_parser("apply", help="apply a plan saved with SyncPlan.save (a JSON file)")
    apply.add_argument("plan", metavar="PLAN", help="the plan file")
    write_args(apply)
    apply.set_defaults(func=cmd_sync_apply)

    resume = ysub.add_parser(
        "resume", help="finish a sync run from its journal (no duplicates, nothing lost)"
    )
    resume.add_argument("run_id", metavar="RUN_ID", help="the run's id (see `d365kit sync runs`)")
    write_args(resume)
    resume.set_defaults(func=cmd_sync_resume)

    runs = ysub.add_parser("runs", help="list the journaled sync runs, newest first")
    journal_args(runs)
    runs.set_defaults(func=cmd_sync_runs)

    bench = sub.add_parser(
        "bench", help="benchmarks against baselines, appended to bench/RESULTS.md (source checkout)"
    )
    bench.add_argument("--only", action="append", metavar="NAME", help="run only this benchmark (repeatable)")
    bench.add_argument(
        "--repeats", type=_repeats, default=5, help="timed calls per contender after a warm-up"
    )
    bench.add_argument("--results", help="Markdown file to append to (default: bench/RESULTS.md)")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

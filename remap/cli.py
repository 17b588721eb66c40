"""The ``remap`` command: a thin layer over the library API.

Every expected failure is a `RemapError`, printed as one ``error:`` line with
exit code 1; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from .diagnostics import Diagnostic, escape, first_line
from .errors import OutputError, PlanError, RemapError
from .version import __version__

Command = Callable[[argparse.Namespace], int]
RULES_HELP = "rule file: a path to a .yaml file, or a name from 'remap list' (e.g. distilhubert)"


class _Parser(argparse.ArgumentParser):
    """Usage errors are one ``error:`` line and exit code 1, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"error: {message} (see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:  # noqa: PLR0915 - one block per command
    parser = _Parser(prog="remap", description="Convert model checkpoints with YAML key-mapping rules.")
    parser.add_argument("--version", action="version", version=f"remap {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    common = _Parser(add_help=False)  # so `remap apply ... --debug` works too
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:  # noqa: A002 - argparse's own name
        return sub.add_parser(name, help=help, parents=[common])

    def source_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("--source-config", metavar="FILE",
                       help="the source model's config as a JSON or YAML file (for checkpoints released without "
                            "one); it overlays the checkpoint's config")

    p = command("apply", help="convert a checkpoint into a transformers model folder")
    p.add_argument("rules", help=RULES_HELP)
    p.add_argument("source", nargs="?", help="checkpoint; omitted: fetch the rule file's default checkpoint")
    p.add_argument("-o", "--output", required=True, help="output folder (must not exist unless --force)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.add_argument("--max-shard-size", metavar="SIZE",
                   help="split weights into shards of at most SIZE (e.g. 2GB, 500MiB) with an index")
    source_config(p)
    p.set_defaults(run=_apply)

    p = command("revert", help="write a converted transformers folder back as the original framework's checkpoint")
    p.add_argument("rules", help=RULES_HELP)
    p.add_argument("hf_dir", metavar="HF_DIR", help="a folder from_pretrained loads (one file or sharded)")
    p.add_argument("-o", "--output", required=True, help="the checkpoint file to write")
    p.add_argument("--like", metavar="ORIGINAL",
                   help="a checkpoint of the same architecture: its config, non-tensor entries and the tensors "
                        "the conversion dropped are kept, and its format is used")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    source_config(p)
    p.set_defaults(run=_revert)

    p = command("plan", help="show how every key would be mapped, without writing")
    p.add_argument("rules", help=RULES_HELP)
    p.add_argument("source", help="checkpoint")
    p.add_argument("--no-target", action="store_true",
                   help="skip the target model check (no transformers import): map keys only")
    p.add_argument("--json", action="store_true", help="print the plan as JSON, for tools")
    source_config(p)
    p.set_defaults(run=_plan)

    p = command("list", help="list the rule files that can be named: bundled ones and installed rule packs")
    p.add_argument("--json", action="store_true", help="print the list as JSON, for tools")
    p.set_defaults(run=_list)

    p = command("inspect", help="list a checkpoint's tensors and other entries, and a converted folder's provenance")
    p.add_argument("source", help="checkpoint, or a folder `remap apply` wrote")
    p.set_defaults(run=_inspect)

    p = command("explain", help="show which rule maps a key, and why every other rule does not")
    p.add_argument("rules", help=RULES_HELP)
    p.add_argument("key", help="a source key, e.g. encoder.layers.0.fc1.weight")
    p.add_argument("--config", action="append", default=[], metavar="NAME=VALUE",
                   help="a source config value (YAML syntax), e.g. extractor_mode=layer_norm; repeatable")
    p.add_argument("--shape", help="the tensor's shape, e.g. 768,3072 (for conditions on shape)")
    p.set_defaults(run=_explain)

    p = command("lint", help="find dead, overlapping and non-invertible rules, and unreachable targets")
    p.add_argument("rules", help=RULES_HELP)
    p.add_argument("source", nargs="?", help="a checkpoint whose keys count as exercising rules")
    p.add_argument("--no-target", action="store_true", help="skip the check against the target model's keys")
    p.add_argument("--json", action="store_true", help="print the findings as JSON, for tools")
    source_config(p)
    p.set_defaults(run=_lint)

    p = command("suggest", help="draft a rule file by pairing a checkpoint's keys with a target model's")
    p.add_argument("source", help="checkpoint")
    p.add_argument("--target", required=True, metavar="CLASS", help="transformers model class, e.g. HubertModel")
    p.add_argument("--config", metavar="FILE", help="target config as JSON (e.g. a config.json); default: "
                                                     "the class's defaults")
    p.add_argument("--state-dict", metavar="PATH", help="where the weights are in the checkpoint, e.g. Distiller "
                                                         "(default: the entry holding the most tensors)")
    p.add_argument("-o", "--output", help="write the draft here instead of printing it")
    p.set_defaults(run=_suggest)

    p = command("verify", help="compare the converted model with the original implementation, per layer")
    p.add_argument("rules", help=RULES_HELP)
    p.add_argument("source", help="the original checkpoint")
    p.add_argument("converted", help="the folder `remap apply` wrote")
    p.add_argument("--audio", help="a 16 kHz mono 16-bit WAV file (default: one second of seeded noise)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max |diff| allowed (default 1e-4)")
    source_config(p)
    p.set_defaults(run=_verify)

    p = command("diff", help="compare weights: a conversion (RULES SOURCE HF_DIR), or two checkpoints (A B)")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="RULES SOURCE HF_DIR: map SOURCE through the rules and compare with HF_DIR; "
                        "A B: compare two checkpoints of the same layout")
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="largest |diff| allowed per tensor (default 0: exact)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON, for tools")
    source_config(p)
    p.set_defaults(run=_diff)

    p = command("test", help="run the inline examples of rule files")
    p.add_argument("rules", nargs="+", help="rule files, folders of them, or rule file names")
    p.add_argument("--json", action="store_true", help="print each failure as JSON, for tools")
    p.set_defaults(run=_test)
    return parser


def _out(lines: Sequence[str]) -> None:
    """Print lines; text from files is escaped, so a key with control characters cannot span lines."""
    sys.stdout.write("\n".join(escape(line) for line in lines) + "\n")


def _json(data: Any) -> None:
    import json

    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _apply(args: argparse.Namespace) -> int:
    from .io.shards import parse_size
    from .pipeline import convert
    from .report import human_bytes

    max_bytes = parse_size(args.max_shard_size) if args.max_shard_size else None
    with _ProgressBar() as bar:
        summary = convert(args.rules, args.source, args.output, force=args.force, max_shard_bytes=max_bytes,
                          progress=bar.update, source_config=args.source_config)
    _out([f"wrote {summary.out_dir}: {summary.mapped} mapped, {summary.dropped} dropped, "
          f"{summary.initialised} initialised, {human_bytes(summary.bytes_written)} written"])
    return 0


class _ProgressBar:
    """A tqdm bar on stderr, created at the first tensor (when the total is known); silent off a terminal."""

    def __init__(self) -> None:
        self.bar: Any = None

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="writing",
                            disable=None, leave=False, file=sys.stderr)
        self.bar.update(done - self.bar.n)


def _revert(args: argparse.Namespace) -> int:
    from .report import human_bytes
    from .revert import revert

    summary = revert(args.rules, args.hf_dir, args.output, like=args.like, force=args.force,
                     source_config=args.source_config)
    lines = [f"wrote {summary.out}: {summary.rebuilt} tensors rebuilt from {args.hf_dir}, "
             f"{human_bytes(summary.out.stat().st_size)}"]
    if summary.kept:
        lines.append(f"  kept from {args.like}: {len(summary.kept)} tensors the conversion dropped "
                     f"({', '.join(summary.kept[:3])}{', ...' if len(summary.kept) > 3 else ''})")
    if summary.absent:
        lines.append(f"  absent (dropped by the conversion; pass --like to keep them): {'; '.join(summary.absent)}")
    if summary.lossy:
        more = ", ..." if len(summary.lossy) > 3 else ""
        lines.append(f"  rebuilt by a numeric inverse (an equivalent model, not the same bytes): "
                     f"{len(summary.lossy)} tensors ({', '.join(summary.lossy[:3])}{more})")
    if summary.left:
        lines.append(f"  left behind (initialised by the conversion, not in the original model): "
                     f"{', '.join(summary.left)}")
    _out(lines)
    return 0


def _plan(args: argparse.Namespace) -> int:
    from .pipeline import prepare
    from .report import plan_json, plan_lines

    prepared = prepare(args.rules, args.source, with_target=not args.no_target, source_config=args.source_config)
    if args.json:
        _json(plan_json(prepared.plan))
    else:
        _out(plan_lines(prepared.plan))
    return 1 if prepared.plan.problems else 0


def _list(args: argparse.Namespace) -> int:
    from .catalog import available
    from .report import rule_file_json, rule_file_lines

    files = available()
    if args.json:
        _json(rule_file_json(files))
    else:
        _out(rule_file_lines(files))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from .io.readers import read_checkpoint
    from .report import inspect_lines

    record = _provenance(Path(args.source))
    lines = [] if record is None else [*_provenance_lines(record), ""]
    _out(lines + inspect_lines(read_checkpoint(args.source)))
    return 0


def _provenance(folder: Path) -> dict[str, Any] | None:
    """A converted folder's provenance record, or None when it has none."""
    import json

    from .provenance import FILE_NAME

    path = folder / FILE_NAME
    if not folder.is_dir() or not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise RemapError(f"unreadable provenance: {first_line(exc)}", str(path)) from None
    if not isinstance(record, dict):
        raise RemapError("unreadable provenance: not a JSON object", str(path))
    return record


def _provenance_lines(record: dict[str, Any]) -> list[str]:
    from .report import provenance_lines

    try:
        return provenance_lines(record)
    except (AttributeError, TypeError) as exc:
        raise RemapError(f"unreadable provenance: {first_line(exc)}", FILE_NAME_HINT) from None


FILE_NAME_HINT = "remap-provenance.json"


def _explain(args: argparse.Namespace) -> int:
    from .authoring.explain import explain_lines
    from .catalog import load

    ruleset = load(args.rules)
    lines, code = explain_lines(ruleset, args.key, _config_values(args.config, ruleset.source.defaults),
                                _shape(args.shape))
    _out(lines)
    return code


def _config_values(pairs: Sequence[str], known: Any) -> dict[str, Any]:
    import yaml

    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise RemapError(f"--config wants NAME=VALUE, got '{pair}'")
        if name not in known:
            raise RemapError(f"--config {name}: not a source config value of this rule file "
                             f"(known: {', '.join(sorted(known))})")
        try:
            values[name] = yaml.safe_load(text)
        except yaml.YAMLError:
            values[name] = text
    return values


def _shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(n) for n in text.replace("x", ",").split(",") if n.strip())
    except ValueError:
        raise RemapError(f"--shape wants integers like 768,3072, got '{text}'") from None


def _lint(args: argparse.Namespace) -> int:
    from .authoring.lint import run_lint
    from .catalog import load

    findings = run_lint(load(args.rules), args.source, with_target=not args.no_target,
                        source_config=args.source_config)
    warnings = sum(f.severity == "warning" for f in findings)
    if args.json:
        _json({"findings": [f.to_json() for f in findings], "warnings": warnings,
               "notes": len(findings) - warnings})
    else:
        _out([str(f) for f in findings] + [f"{warnings} warnings, {len(findings) - warnings} notes"])
    return 1 if warnings else 0


def _suggest(args: argparse.Namespace) -> int:
    from .authoring.suggest import find_state_dict, load_config, suggest_draft
    from .io.readers import read_checkpoint

    checkpoint = read_checkpoint(args.source)
    state_dict = args.state_dict if args.state_dict is not None else find_state_dict(checkpoint)
    values = load_config(args.config) if args.config else {}
    text, mapping, total = suggest_draft(checkpoint, state_dict, args.target, values, args.config or "--config")
    if args.output:
        try:
            Path(args.output).write_text(text)
        except OSError as exc:
            raise OutputError(f"cannot write the draft: {exc.strerror}", args.output) from None
        _out([f"wrote {args.output}: {len(mapping)} of {total} source keys paired; see the TODO lines"])
    else:
        _out(text.rstrip("\n").split("\n"))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from .catalog import load
    from .verify import verify

    report = verify(load(args.rules), Path(args.source), Path(args.converted),
                    Path(args.audio) if args.audio else None, args.tolerance, source_config=args.source_config)
    lines = [f"{name:>12}  max|diff| = {diff:.3g}" for name, diff in report.diffs.items()]
    verdict = "PARITY OK" if report.ok else "PARITY FAILED"
    lines.append(f"{verdict}: worst {report.worst:.3g} (tolerance {report.tolerance:g}); transformers load report "
                 "clean")
    _out(lines)
    return 0 if report.ok else 1


def _diff(args: argparse.Namespace) -> int:
    from .compare import compare

    if len(args.paths) not in (2, 3):
        raise RemapError("diff takes RULES SOURCE HF_DIR, or two checkpoints A B")
    report = compare(args.paths, tolerance=args.tolerance, source_config=args.source_config)
    if args.json:
        _json(report.to_json())
    else:
        _out(report.lines())
    return 0 if report.ok else 1


def _rule_files(names: Sequence[str]) -> list[Path]:
    from .catalog import find

    files: list[Path] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            found = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
            if not found:
                raise RemapError("no rule files (*.yaml) in this folder", name)
            files += found
        else:
            files.append(find(name))
    return files


def _test(args: argparse.Namespace) -> int:
    from .authoring.examples import run_examples
    from .rules.compiler import compile_file

    passed = failed = 0
    lines: list[str] = []
    failures: list[Diagnostic] = []
    for path in _rule_files(args.rules):
        ruleset = compile_file(path)
        found = run_examples(ruleset)
        failures += found
        lines += [f"FAIL {f}" for f in found]
        ok = len(ruleset.examples) - len(found)
        lines.append(f"{path}: {ok} of {len(ruleset.examples)} examples passed")
        passed, failed = passed + ok, failed + len(found)
    if args.json:
        _json({"passed": passed, "failed": failed, "failures": [f.to_json() for f in failures]})
    else:
        _out([*lines, f"{passed} passed, {failed} failed"])
    return 1 if failed else 0


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through the writer, which removes its temporary folder


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if on_main else None
    try:
        return _run(args)
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.run(args))
    except PlanError as exc:
        if args.debug:
            raise
        for problem in exc.problems:
            _err(f"error: {problem}")
        _err(f"error: {len(exc.problems)} problem(s); nothing was written")
        return 1
    except RemapError as exc:
        if args.debug:
            raise
        _err(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        _err(f"error: internal error: {first_line(exc, with_type=True)} (rerun with --debug for a traceback)")
        return 1


def _err(line: str) -> None:
    print(escape(line), file=sys.stderr)

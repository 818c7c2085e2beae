"""Command line: `python -m pipeline run --spec spaces.yaml` and the single steps."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from pipeline import runner
from pipeline.errors import PipelineError
from pipeline.spec import Spec, load_spec


def _spaces(spec: Spec, chosen: str | None) -> list[str]:
    if chosen is None:
        return spec.training_order()
    if chosen not in spec.spaces:
        raise PipelineError(f"unknown space {chosen} (known: {', '.join(spec.spaces)})")
    return [chosen]


def _run(spec: Spec, args: argparse.Namespace) -> None:
    started = time.time()
    summary = runner.run(spec, retrain=args.retrain)
    print(json.dumps(summary, indent=2, default=str))
    print(f"pipeline finished in {time.time() - started:.1f} s")


def _validate(spec: Spec, args: argparse.Namespace) -> None:
    for result in runner.validate(spec):
        excluded = [f"{p.column} ({p.reason})" for p in result.profiles if p.excluded]
        print(f"{result.space}: {len(result.profiles)} columns, excluded: {excluded or 'none'}")
        for join in result.joins:
            print(
                f"  {join.parent} <- {join.child} [{join.status}] coverage "
                f"{join.coverage if join.coverage is None else round(join.coverage, 3)}: "
                f"{join.message}"
            )


def _train(spec: Spec, args: argparse.Namespace) -> None:
    for name in _spaces(spec, args.space):
        runner.train(spec, name)
        _embed_one(spec, name)


def _embed(spec: Spec, args: argparse.Namespace) -> None:
    for name in _spaces(spec, args.space):
        _embed_one(spec, name, args.partition)


def _embed_one(spec: Spec, name: str, partition: int | None = None) -> None:
    print(f"{name}: {runner.embed(spec, name, partition=partition)} rows embedded")
    if spec.neighbours(name) and partition is None:  # a partition leaves them to the whole
        print(f"{name}: {runner.neighbours(spec, name)} neighbour rows written")


def _predict(spec: Spec, args: argparse.Namespace) -> None:
    for name in _spaces(spec, args.space):
        for target in spec.spaces[name].targets:
            if args.retrain:
                runner.train_target(spec, name, target)
            rows = runner.predict(spec, name, target, partition=args.partition)
            print(f"{name}.{target}: {rows} rows predicted")


def _search(spec: Spec, args: argparse.Namespace) -> None:
    from pipeline.search import nearest, nearest_to_record, nearest_to_text

    if args.row is not None:
        try:
            record = json.loads(args.row)
        except json.JSONDecodeError as error:
            raise PipelineError(f"--row is not valid JSON ({error})") from None
        found = nearest_to_record(spec, args.space, record, args.k, args.explain)
    elif args.text is not None:
        found = nearest_to_text(spec, args.space, args.text, args.k, args.explain)
    else:
        found = nearest(spec, args.space, args.key, args.k, args.explain)
    for neighbour in found:
        line = f"{', '.join(map(str, neighbour.key))}\tsimilarity {neighbour.similarity:.4f}"
        if neighbour.explanation:
            top = sorted(neighbour.explanation.items(), key=lambda kv: -kv[1])[:4]
            line += "\tbecause of " + ", ".join(f"{name} ({value:+.3f})" for name, value in top)
        print(line)


def _report(spec: Spec, args: argparse.Namespace) -> None:
    from pipeline.reports import space_report

    folder = spec.artifacts / "report"
    for name in _spaces(spec, args.space):
        for kind, path in space_report(spec, name, folder).items():
            print(f"{name} {kind}: {path}")


def _rollback(spec: Spec, args: argparse.Namespace) -> None:
    from pipeline.store import model_store

    if args.space not in spec.spaces:
        raise PipelineError(f"unknown space {args.space} (known: {', '.join(spec.spaces)})")
    if args.target:
        folder = runner.predictor_folder(spec, args.space, args.target)
        what = f"predictor {args.space}.{args.target}"
    else:
        folder, what = runner.space_folder(spec, args.space), f"space {args.space}"
    print(f"{what}: {model_store.roll_back(folder, what)} is current again")
    if not args.target:
        print(
            f"re-embed it and retrain what reads it: python -m pipeline embed --space "
            f"{args.space}, then train the spaces above it (or python -m pipeline run)"
        )


def _dbt_sources(spec: Spec, args: argparse.Namespace) -> None:
    written = runner.update_dbt_project(spec)
    for path in written:
        print(f"{path}: written")
    if not written:
        print(f"{spec.dbt_project}: the ml source and ml_spaces() already follow the spec")


COMMANDS = {
    "run": (
        _run,
        "validate; train what needs it bottom-up; embed and predict the rows that changed",
    ),
    "validate": (_validate, "profile columns and check keys and joins"),
    "train": (_train, "train (and embed) one space or all"),
    "embed": (_embed, "re-embed current rows with the saved models"),
    "predict": (_predict, "score every row with the saved predictors"),
    "report": (_report, "plots (losses, mutual information, 3-d sphere) and a summary"),
    "search": (
        _search,
        "rows most similar to a row (--key), a described row (--row JSON) or a text (--text)",
    ),
    "rollback": (_rollback, "make the previous saved model of a space (or predictor) current"),
    "dbt-sources": (
        _dbt_sources,
        "write the dbt project's ml source and ml_spaces() macro from the spec (run does too)",
    ),
}


def _init_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--warehouse",
        required=True,
        help="a DuckDB file, or an attach string (ducklake:..., postgres:...)",
    )
    command.add_argument(
        "--target",
        help="TABLE.COLUMN to predict: TABLE becomes the root (default: the table "
        "most others point at)",
    )
    command.add_argument("--out", default="spaces.yaml", help="where to write the spec")
    command.add_argument("--schema", action="append", help="only tables of this schema (repeat)")
    command.add_argument("--exclude", action="append", help="leave this table out (repeat)")
    command.add_argument(
        "--warehouse-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an ATTACH option of an attached warehouse, e.g. data_path=/lake/data (repeat)",
    )
    command.add_argument("--output-schema", default="ml", help="where run will write (default ml)")
    command.add_argument(
        "--dbt-project",
        help="your dbt project: run writes the ml source and embedding macros into it",
    )
    command.add_argument("--force", action="store_true", help="replace --out (kept as .bak)")


def _init(args: argparse.Namespace) -> None:
    from pathlib import Path

    from pipeline.discovery.draft import draft_spec, write_spec_file

    options = {}
    for option in args.warehouse_option:
        name, separator, value = option.partition("=")
        if not separator:
            raise PipelineError(f"--warehouse-option {option}: write it as KEY=VALUE")
        options[name] = value
    out = Path(args.out)
    if out.exists() and not args.force:  # before reading the warehouse
        raise PipelineError(f"{out} exists -> pass --force to replace it (it is kept as .bak)")
    started = time.time()
    draft = draft_spec(
        args.warehouse,
        target=args.target,
        schemas=args.schema,
        exclude=args.exclude,
        options=options or None,
        output_schema=args.output_schema,
        spec_folder=out.resolve().parent,
        dbt_project=Path(args.dbt_project) if args.dbt_project else None,
    )
    backup = write_spec_file(draft, out, force=args.force)
    spaces = draft.spec.spaces
    print(
        f"{out}: {len(spaces)} space(s) from {len(draft.relations)} relation(s), root "
        f"{next(iter(spaces))}, in {time.time() - started:.1f} s"
        + (f" (the old file is {backup})" if backup else "")
    )
    for line in draft.layout.left_out:
        print(f"  left out: {line}")
    print(f"next: python -m pipeline run --spec {out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--spec", default="spaces.yaml", help="path to spaces.yaml")
        if name in ("train", "embed", "predict", "report"):
            command.add_argument("--space", help="only this space")
        if name == "search":
            command.add_argument("--space", required=True, help="the space to search")
            query = command.add_mutually_exclusive_group(required=True)
            query.add_argument("--key", nargs="+", help="rows like the row with this key")
            query.add_argument(
                "--row",
                help='rows like a described one: JSON of some columns, e.g. \'{"city": "Lyon"}\', '
                "child spaces as lists of records, references by their key column",
            )
            query.add_argument("--text", help="rows whose text columns read like this text")
            command.add_argument("--k", type=int, default=5, help="how many rows")
            command.add_argument("--explain", action="store_true", help="inputs behind it")
        if name == "predict":
            command.add_argument("--retrain", action="store_true", help="retrain predictors")
        if name in ("embed", "predict"):
            command.add_argument(
                "--partition",
                type=int,
                help="only this slice of the rows (0 to partitions - 1 of the spec), beside "
                "other processes or machines doing the others",
            )
        if name == "run":
            command.add_argument(
                "--retrain",
                action="store_true",
                help="retrain every space and predictor (by default only what changed)",
            )
        if name == "rollback":
            command.add_argument("--space", required=True, help="the space")
            command.add_argument("--target", help="roll back this target's predictor instead")
    commands.add_parser("demo", help="write the demo warehouse (--warehouse, --scale, --seed)")
    _init_arguments(commands.add_parser("init", help="write a spec for an existing warehouse"))
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["demo"]:
        from pipeline.demo import main as demo_main

        demo_main(argv[1:])
        return
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        if args.command == "init":
            _init(args)
            return
        spec = load_spec(args.spec)
        COMMANDS[args.command][0](spec, args)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)

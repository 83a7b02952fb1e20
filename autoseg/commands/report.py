"""``autoseg report DATASET [-o report.html]``: one self-contained page with the evidence of a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from autoseg.commands.common import compose_config, dataset_root


def cmd_report(args: argparse.Namespace) -> int:
    from autoseg.commands.config import Paths
    from autoseg.report.collect import collect_run
    from autoseg.report.render import other_run, render_report
    from autoseg.utils.files import atomic_path

    cfg = compose_config(args)
    root = dataset_root(args.dataset, cfg)
    paths = Paths.from_config(cfg)
    model_root = paths.require("results") / root.name
    run = collect_run(paths.require("preprocessed") / root.name, model_root, args.plans_name)
    compare = None
    if args.compare:
        other = Path(args.compare)
        compare = (other_run(other, args.plans_name, args.compare_configuration), str(other))
    doc = render_report(run, root, compare, thumbnails=args.thumbnails)
    out = Path(args.output) if args.output else model_root / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    markdown = out.with_suffix(".md")
    for path, text in ((out, doc.html()), (markdown, doc.markdown())):
        with atomic_path(path, suffix=path.suffix) as tmp:
            Path(tmp).write_text(text, encoding="utf-8")
        path.chmod(0o644)  # a page to share (the temporary file was private)
    print(f"report written to {out} (open it in a browser; no network needed) and {markdown}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``report`` to the ``autoseg`` parser."""
    p = sub.add_parser(
        "report",
        help="one self-contained HTML page (+ Markdown): fingerprint, plan, training, CV, choice",
    )
    p.add_argument("dataset", help="DatasetXXX_Name, its number, or the path of a raw dataset folder")
    p.add_argument(
        "-o", "--output", default=None, help="the HTML file (default: <results>/<Dataset>/report.html)"
    )
    p.add_argument("--plans-name", default=None, help="plans to report (default: the selection's)")
    p.add_argument(
        "--compare", default=None, metavar="OTHER_RESULTS", help="another run's <results>/<Dataset>"
    )
    p.add_argument("--compare-configuration", default=None, help="the configuration of the other run")
    p.add_argument("--thumbnails", type=int, default=12, help="overlay thumbnails of the worst cases")
    p.add_argument("overrides", nargs="*", help="hydra overrides, e.g. paths.results=/data/results")
    p.set_defaults(func=cmd_report)

"""Where the worker processes' CPU went, from the py-spy files of `python -m bench.crash
--profile DIR`: every sample sorted into one category, with percentages.

    python -m bench.profile_summary DIR

A sample belongs to the outermost library it is in (database, Jinja, SMTP, payload conversion,
Temporal bridge): a JSON column encoded inside SQLAlchemy is database time, a Pydantic model
validated by the payload converter is conversion time. Outside those, to the workflow task or
the activity whose frames it is in (an activity by its function's name: its own code and our
code it calls), else to "other" (the event loop, logging, garbage collection seen as Python).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Path fragments, matched at the start of a path segment (py-spy shortens site-packages paths
# to `package/module.py`; a standard-library module may keep its full path).
LIBRARIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("SQLAlchemy/database", ("sqlalchemy/", "psycopg/", "psycopg_pool/", "psycopg_binary/",
                             "asyncpg/", "aiosqlite/", "sqlite3/")),
    ("Jinja rendering", ("jinja2/", "markupsafe/")),
    ("SMTP", ("aiosmtplib/", "smtplib.py", "email/")),
    ("payload conversion/codec", ("temporalio/converter.py", "temporalio/contrib/pydantic/",
                                  "pydantic/", "pydantic_core/", "loanflow/codec",
                                  "cryptography/")),
    ("Temporal bridge/RPC", ("temporalio/bridge/", "temporalio/service.py", "google/protobuf/")),
)
WORKFLOW = ("temporalio/worker/_workflow", "temporalio/worker/workflow_sandbox/")
ACTIVITY = ("temporalio/worker/_activity",)
# Frames between the SDK's activity runner and the activity function itself.
PLUMBING = ("temporalio/", "asyncio/", "contextlib.py", "concurrent/", "functools.py")
WORKFLOW_TASK = "workflow task"
OTHER = "other"

FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


@dataclass(frozen=True)
class Frame:
    name: str
    file: str


def parse_frame(text: str) -> Frame:
    match = FRAME.match(text.strip())
    return Frame(match["name"], match["file"]) if match else Frame(text.strip(), "")


def parse_line(line: str) -> tuple[list[Frame], int] | None:
    """One line of py-spy's raw (collapsed) format: `root;...;leaf COUNT`."""
    stack, _, number = line.rstrip().rpartition(" ")
    if not stack or not number.isdigit():
        return None
    return [parse_frame(f) for f in stack.split(";")], int(number)


def _in(file: str, fragments: Iterable[str]) -> bool:
    path = "/" + file
    return any("/" + fragment in path for fragment in fragments)


def categorise(frames: Sequence[Frame]) -> str:
    """The category of one sample (frames root first)."""
    for frame in frames:  # the outermost library wins
        for category, fragments in LIBRARIES:
            if _in(frame.file, fragments):
                return category
    if any(_in(f.file, WORKFLOW) for f in frames):
        return WORKFLOW_TASK
    runners = [i for i, f in enumerate(frames) if _in(f.file, ACTIVITY)]
    if runners:
        return "activity: " + activity_name(frames[runners[-1] + 1:])
    return OTHER


def activity_name(below_runner: Sequence[Frame]) -> str:
    """The first frame under the SDK's activity runner that is not plumbing: the activity."""
    own = next((f for f in below_runner if not _in(f.file, PLUMBING)), None)
    return own.name if own else "(SDK)"


def summarise(lines: Iterable[str]) -> Counter[str]:
    samples: Counter[str] = Counter()
    for line in lines:
        parsed = parse_line(line)
        if parsed is not None:
            frames, number = parsed
            samples[categorise(frames)] += number
    return samples


def summarise_dir(directory: Path) -> tuple[Counter[str], list[Path]]:
    files = sorted(directory.glob("*.txt"))
    samples: Counter[str] = Counter()
    for path in files:
        samples += summarise(path.read_text().splitlines())
    return samples, files


def table(samples: Counter[str]) -> str:
    total = sum(samples.values()) or 1
    width = max((len(c) for c in samples), default=8)
    rows = [f"{'category':<{width}}  {'samples':>8}  {'share':>6}"]
    rows += [f"{category:<{width}}  {n:>8}  {n / total:>6.1%}" for category, n in samples.most_common()]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_summary",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("dir", type=Path, help="the --profile DIR of a bench.crash run")
    args = parser.parse_args(argv)
    samples, files = summarise_dir(args.dir)
    if not files:
        raise SystemExit(f"no py-spy raw files (*.txt) in {args.dir}")
    print(f"{sum(samples.values())} samples from {len(files)} processes "
          f"({', '.join(p.stem for p in files)})\n")
    print(table(samples))


if __name__ == "__main__":
    main()

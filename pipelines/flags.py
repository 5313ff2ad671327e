"""Checks of label_corpus's command line, before any data is read and any model loads: pure
functions, each problem one UsageError line naming the flag and what it takes.

- numbers in range: `integer` / `decimal` are argparse types that say the allowed values;
- every argument is ours or one of Beam's pipeline options, of any runner (`unknown_arguments`):
  Beam itself only logs "Discarding unparseable args" and runs without the option, so a typo
  such as `--batch-sise 64` would run to the end with the default;
- `--date` only where --input or --output has `{date}` (`check_date`);
- a PortableRunner environment that Beam would fail on with a traceback (`environment_problem`);
- `--output` is not an existing file, and not a directory the input pattern reads from
  (`output_problem`): the partition would land among, or be read back as, the inputs.
"""
from __future__ import annotations

import argparse
import difflib
import fnmatch
import math
import os
from functools import lru_cache
from typing import Callable, Iterable, Sequence

from pipelines.labeling import UsageError


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, with its errors (a usage block and a message, then exit 2) as one
    UsageError line, which the command line prints and exits 2 with."""

    def error(self, message: str):
        raise UsageError(message)


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer from low (to high), else an error saying so."""
    allowed = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = None
        if number is None or number < low or (high is not None and number > high):
            raise argparse.ArgumentTypeError(f"{value!r} is not {allowed}")
        return number

    parse.__name__ = allowed  # what argparse's own messages call the type
    return parse


def decimal(low: float, high: float | None = None) -> Callable[[str], float]:
    """An argparse type: a finite number from low (to high), else an error saying so."""
    allowed = f"a number >= {low:g}" if high is None else f"a number from {low:g} to {high:g}"

    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number < low or (high is not None and number > high):
            raise argparse.ArgumentTypeError(f"{value!r} is not {allowed}")
        return number

    parse.__name__ = allowed
    return parse


# Beam modules that define pipeline options outside apache_beam.options.pipeline_options: Beam
# registers an options class only when its module is imported (PipelineOptions.__subclasses__), so
# the check imports them first. tests/test_flags.py scans Beam's sources to keep this list whole.
BEAM_OPTION_MODULES = ("apache_beam.runners.dask.dask_runner", "apache_beam.runners.render", "apache_beam.yaml.options")


def renamed(spelling: str) -> type[argparse.Action]:
    """An argparse action for a flag that is gone: its use is a UsageError naming the new
    spelling (`{value}` in it is filled with the value given)."""

    class Renamed(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            given = f"{option_string} {values}" if isinstance(values, str) else option_string
            raise UsageError(f"{given} is now spelled {spelling.format(value=values)}")

    return Renamed


class _BeamParser:
    """Beam's own parser of pipeline options, built as PipelineOptions.get_all_options builds it
    (every PipelineOptions subclass's _add_argparse_args, no abbreviations), with its errors
    (a bad value for one of its options) as one UsageError line; every runner's options
    included (BEAM_OPTION_MODULES), also those of a module whose optional dependency is missing
    here (the Dask runner's without dask: read from its source, unimported)."""

    @staticmethod
    @lru_cache(maxsize=1)
    def get() -> argparse.ArgumentParser:
        from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

        class OneLine(_BeamArgumentParser):
            def error(self, message: str):
                raise UsageError(f"Beam pipeline option: {message}")

        unimportable = [module for module in BEAM_OPTION_MODULES if not _imports(module)]
        parser = OneLine(allow_abbrev=False, add_help=False)
        for cls in {str(cls): cls for cls in PipelineOptions.__subclasses__()}.values():
            cls._add_argparse_args(parser)  # noqa: SLF001 - how Beam itself lists its options
        known = {option for action in parser._actions for option in action.option_strings}
        for module in unimportable:
            for option, takes_value in _declared_options(module):
                if option not in known:
                    parser.add_argument(option, **({"nargs": "?"} if takes_value else {"action": "store_true"}),
                                        help=f"an option of {module}, which cannot be imported here")
                    known.add(option)
        return parser


def _imports(module: str) -> bool:
    """Import one of Beam's option modules; False when its optional dependency is missing."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _declared_options(module: str) -> list[tuple[str, bool]]:
    """The options a Beam module declares (parser.add_argument('--name', ...) in its source), each
    with whether it takes a value (False for store_true/store_false/store_const/count), read
    without importing the module."""
    import ast

    import apache_beam

    # The file itself, found without importing its package (apache_beam.yaml needs pandas).
    source = os.path.join(os.path.dirname(apache_beam.__file__), *module.split(".")[1:]) + ".py"
    if not os.path.isfile(source):
        return []
    with open(source, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            action = next((k.value.value for k in node.keywords
                           if k.arg == "action" and isinstance(k.value, ast.Constant)), None)
            takes_value = action not in ("store_true", "store_false", "store_const", "count")
            found += [(arg.value, takes_value) for arg in node.args
                      if isinstance(arg, ast.Constant) and str(arg.value).startswith("--")]
    return found


def beam_options() -> list[str]:
    """Every option string Beam's pipeline options take (--runner, --temp_location, ...)."""
    return [option for action in _BeamParser.get()._actions for option in action.option_strings]


def unknown_arguments(beam_args: Sequence[str], ours: Iterable[str]) -> None:
    """The arguments our parser left (parse_known_args) must all be Beam pipeline options; the
    first that is not is a UsageError naming it, with the closest known flag (ours or Beam's)."""
    _, unknown = _BeamParser.get().parse_known_args(list(beam_args))
    known = [*ours, *beam_options()]
    previous_was_option = False
    for arg in unknown:
        if arg.startswith("-"):
            name = arg.split("=", 1)[0]
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else " (--help lists ours; Beam's are its pipeline options)"
            raise UsageError(f"unknown option {name}: neither label_corpus's nor a Beam pipeline option{hint}")
        if not previous_was_option:  # a value after an unknown option is reported with the option
            raise UsageError(f"unexpected argument {arg!r}: every argument is an option (an unquoted glob in "
                             f"--input? quote it: --input 'posts/*.jsonl')")
        previous_was_option = arg.startswith("-")


SUBPROCESS_HARNESS = "beam:env:harness_subprocess_python:v1"  # --environment_type: an SDK harness process per worker
SDK_WORKER_COMMAND = "python -m apache_beam.runners.worker.sdk_worker_main"  # what that process runs


def environment_problem(beam_args: Sequence[str]) -> str | None:
    """Why Beam would fail on the workers' environment with a traceback at launch (None: it would
    not): the subprocess harness without its command line (--environment_config), or PROCESS
    under the job service embedded in the launcher, whose runner has no PROCESS environment."""
    from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions

    options = PipelineOptions(list(beam_args)).view_as(PortableOptions)
    kind = (options.environment_type or "").upper()
    if options.environment_type == SUBPROCESS_HARNESS and not options.environment_config:
        return (f"--environment_type {SUBPROCESS_HARNESS} needs the command line of the worker process: "
                f"--environment_config '{SDK_WORKER_COMMAND}'")
    if kind in ("PROCESS", "BEAM:ENV:PROCESS:V1") and options.job_endpoint == "embed":
        return ("--environment_type PROCESS: the job service embedded in the launcher (--job_endpoint embed) has no "
                f"PROCESS environment; use --environment_type {SUBPROCESS_HARNESS} --environment_config "
                f"'{SDK_WORKER_COMMAND}', or EXTERNAL with a worker pool (deploy/README.md)")
    return None


def check_date(input_template: str, output_template: str, date: str | None) -> None:
    """--date fills {date} in --input and --output: given where neither has it, it would be unused."""
    if date and "{date}" not in input_template and "{date}" not in output_template:
        raise UsageError(f"--date {date} is given but neither --input nor --output contains {{date}}; "
                         f"put {{date}} where the date goes, e.g. --output 'labels/date={{date}}'")


def output_problem(output: str, input_pattern: str, is_file: Callable[[str], bool]) -> str | None:
    """Why `output` cannot be the partition directory of a run reading `input_pattern` (None:
    it can): it is an existing file; or it is a directory the pattern reads files from (the
    inputs' directory), lies inside one where the pattern's wildcards reach ('**', or a
    wildcard in a directory component), or matches the pattern itself: the partition would be
    written among the inputs, or read back as input by the next run. A sibling directory of
    the inputs (posts/a.jsonl -> posts/labels/) is fine: the pattern does not reach into it.
    is_file: whether a path names an existing file (FileSystems for remote paths)."""
    if is_file(output):
        return f"--output {output!r} is an existing file; give a directory for the partition"
    output_parts, pattern_parts = _parts(output), _parts(input_pattern)
    if _pattern_reaches(output_parts, pattern_parts):
        return (f"--output {output!r} is an input directory of --input {input_pattern!r}, or holds one: the "
                "partition would be written among the inputs; give a directory outside them")
    return None


def _parts(path: str) -> list[str]:
    """A path's components, local paths made absolute (symlinks resolved) so that two spellings
    of one directory compare equal."""
    if "://" not in path:
        path = os.path.realpath(os.path.expanduser(path))
    return [part for part in path.rstrip("/").split("/")]


def _pattern_reaches(directory: list[str], pattern: list[str]) -> bool:
    """Whether the path components `directory` match the first components of `pattern` (fnmatch
    per component, as Beam's '*' stops at '/'; '**' matches any number of them): the pattern
    then matches `directory` itself or paths inside it."""
    if not directory:
        return True
    if not pattern:
        return False  # the pattern's paths end above `directory`
    if "**" in pattern[0]:
        return True
    return fnmatch.fnmatchcase(directory[0], pattern[0]) and _pattern_reaches(directory[1:], pattern[1:])


def is_existing_file(path: str) -> bool:
    """Whether `path` names an existing file: locally os.path.isfile, else an object of exactly
    that name (FileSystems.match)."""
    if "://" not in path:
        return os.path.isfile(path)
    from apache_beam.io.filesystems import FileSystems

    try:
        return any(m.path.rstrip("/") == path.rstrip("/") for m in FileSystems.match([path])[0].metadata_list)
    except Exception:  # noqa: BLE001 - nothing there, or not listable: the run finds out itself
        return False

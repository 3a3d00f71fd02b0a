"""The documentation against the code: every relative link in README.md and docs/**/*.md leads to
a file that exists (and, for a link to a heading of a Markdown file, to a heading that exists, by
GitHub's anchor rules), and every command line there that runs one of the repository's scripts
(`python X.py ...`, `.venv/bin/python X.py ...`, `python3 ...`, `torchrun ... X.py ...`,
`python -m torch.distributed.run ... X.py`, bench/*.py, tools/*.py) names a script that exists
and only options its argparse parser accepts, with a value among the option's choices (or one its
type accepts), and no deprecated option or value.

Commands are read from fenced code blocks (shell or unlabelled) and from inline code spans that
start with such a command; backslash continuations are joined, comments dropped, and `&&`, `||`,
`;` and `|` chains split. Placeholders (`...`, `FILE`, `$VAR`) are skipped. The parsers are the
scripts' own (`build_parser()`, or the parser their `main`/`parse_args` builds, caught before it
parses): light, standard library only, no torch or NeMo (checked in a subprocess).
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import re
import shlex
import subprocess
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console", "zsh"}
PYTHON = re.compile(r"^(?:.*/)?python[0-9.]*$")          # python, python3, python3.11, .venv/bin/python
LAUNCHER_MODULES = {"torch.distributed.run", "tests.emulated_npu"}  # python -m M [its options] SCRIPT.py ...
OTHER_MODULES_OR_TOOLS = {"pip", "pytest", "venv", "uv"}
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
PLACEHOLDER_VALUE = re.compile(r"^[A-Z][A-Z0-9_]*$|\.\.\.|\$|<|>")


def doc_files(root: Path = REPO) -> list[Path]:
    files = [root / "README.md"] if (root / "README.md").is_file() else []
    return files + sorted((root / "docs").rglob("*.md")) if (root / "docs").is_dir() else files


# ------------------------------------------------------------------------------ Markdown reading

@dataclass
class Block:
    language: str
    lines: list[tuple[int, str]]  # (line number, text)


def split_markdown(text: str) -> tuple[list[tuple[int, str]], list[Block]]:
    """(prose lines, fenced code blocks), each line with its 1-based number."""
    prose, blocks, block, fence = [], [], None, ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip()
        if block is None:
            match = re.match(r"^(`{3,}|~{3,})\s*([\w+-]*)", stripped)
            if match:
                fence, block = match.group(1), Block(match.group(2).lower(), [])
            else:
                prose.append((number, line))
        elif stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]).strip():
            blocks.append(block)
            block = None
        else:
            block.lines.append((number, line))
    if block is not None:
        blocks.append(block)
    return prose, blocks


def without_code_spans(line: str) -> str:
    return re.sub(r"(`+)(.+?)\1", "", line)


def code_spans(line: str) -> list[str]:
    return [match.group(2) for match in re.finditer(r"(`+)(.+?)\1", line)]


def github_slug(heading: str) -> str:
    """GitHub's anchor of a heading: the rendered text, lower case, punctuation other than `-` and
    `_` removed, spaces turned into `-` (duplicates get -1, -2, ... in the caller)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)         # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)                                 # inline HTML tags
    text = re.sub(r"(`+)(.+?)\1", r"\2", text)                          # code spans: their content
    text = re.sub(r"(\*\*|__|\*)(.+?)\1", r"\2", text)                  # emphasis markers
    text = text.strip().lower()
    kept = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LMN")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    prose, _ = split_markdown(path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose:
        match = re.match(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if match:
            slug = github_slug(match.group(2))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
        for html in re.finditer(r"<a\s+(?:name|id)=\"([^\"]+)\"", line):
            found.add(html.group(1))
    return found


LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")


def relative_links(path: Path) -> list[tuple[int, str]]:
    prose, _ = split_markdown(path.read_text(encoding="utf-8"))
    links = []
    for number, line in prose:
        line = without_code_spans(line)
        targets = [match.group(1) for match in LINK.finditer(line)]
        definition = REFERENCE_DEFINITION.match(line)
        if definition:
            targets.append(definition.group(1))
        for target in targets:
            if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("//"):
                continue  # http:, https:, mailto:
            links.append((number, target))
    return links


def link_problems(path: Path, root: Path = REPO) -> list[str]:
    problems = []
    for number, target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        where = f"{path.relative_to(root)}:{number}: link {target!r}"
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            problems.append(f"{where}: {file_part} does not exist")
            continue
        if anchor and destination.suffix == ".md" and destination.is_file():
            if anchor not in anchors(destination):
                problems.append(f"{where}: no heading #{anchor} in {destination.relative_to(root)}")
    return problems


# ------------------------------------------------------------------------------ command lines

@dataclass
class Command:
    source: str  # file:line
    text: str


def logical_lines(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Backslash continuations joined."""
    joined, start, parts = [], None, []
    for number, line in lines:
        if start is None:
            start = number
        if line.rstrip().endswith("\\"):
            parts.append(line.rstrip()[:-1])
            continue
        parts.append(line)
        joined.append((start, " ".join(part.strip() for part in parts)))
        start, parts = None, []
    if parts:
        joined.append((start, " ".join(part.strip() for part in parts)))
    return joined


def tokenize(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>()")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        return list(lexer)
    except ValueError:  # an unbalanced quote in prose: read it naively
        return line.split("#")[0].split()


def simple_commands(tokens: list[str]) -> list[list[str]]:
    commands, current = [], []
    for token in tokens:
        if token and set(token) <= set(";&|()"):
            if current:
                commands.append(current)
            current = []
        else:
            current.append(token)
    if current:
        commands.append(current)
    return commands


def starts_a_command(text: str) -> bool:
    tokens = [t for t in text.split() if not ENV_ASSIGNMENT.match(t)]
    return bool(tokens) and (bool(PYTHON.match(tokens[0])) or tokens[0] == "torchrun")


def doc_commands(path: Path, root: Path = REPO) -> list[Command]:
    prose, blocks = split_markdown(path.read_text(encoding="utf-8"))
    name = path.relative_to(root)
    found = []
    for block in blocks:
        if block.language not in SHELL_LANGUAGES:
            continue
        for number, line in logical_lines(block.lines):
            found.append(Command(f"{name}:{number}", line))
    for number, line in prose:
        for span in code_spans(line):
            if starts_a_command(span):
                found.append(Command(f"{name}:{number}", span))
    return found


def script_invocation(tokens: list[str]) -> tuple[str, list[str]] | None:
    """(script path, its arguments) of one simple command, or None when it runs no script."""
    while tokens and ENV_ASSIGNMENT.match(tokens[0]):
        tokens = tokens[1:]
    if not tokens:
        return None
    head, rest = tokens[0], tokens[1:]
    if head == "torchrun":
        launcher_args = rest
    elif PYTHON.match(head):
        while rest and rest[0].startswith("-") and rest[0] not in ("-m", "-c"):
            rest = rest[1:]  # python's own flags (-u, -X ..., -O)
        if not rest or rest[0] == "-c":
            return None
        if rest[0] == "-m":
            if len(rest) < 2 or rest[1] not in LAUNCHER_MODULES:
                return None  # python -m pip / pytest / venv ...
            launcher_args = rest[2:]
        else:
            return (rest[0], rest[1:]) if rest[0].endswith(".py") else None
    else:
        return None
    for index, token in enumerate(launcher_args):
        if token.endswith(".py"):
            return token, launcher_args[index + 1:]
    return None


class _Captured(Exception):
    def __init__(self, parser):
        super().__init__("parser captured")
        self.parser = parser


_PARSERS: dict[str, argparse.ArgumentParser] = {}


def parser_for(script: str, root: Path = REPO) -> argparse.ArgumentParser:
    """The script's own argparse parser: build_parser() where it has one, else the parser its
    parse_args(argv) or main(argv) builds, caught at its parse_args call."""
    path = (root / script).resolve()
    key = str(path)
    if key in _PARSERS:
        return _PARSERS[key]
    if str(REPO) not in sys.path:  # the scripts import common/
        sys.path.insert(0, str(REPO))
    module_name = "_docs_script_" + re.sub(r"\W", "_", str(path))
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    if hasattr(module, "build_parser"):
        parser = module.build_parser()
    else:
        def capture(self, *args, **kwargs):
            raise _Captured(self)

        saved = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args
        argparse.ArgumentParser.parse_args = capture
        argparse.ArgumentParser.parse_known_args = capture
        try:
            entry = getattr(module, "parse_args", None) or getattr(module, "main")
            entry(*([[]] if inspect.signature(entry).parameters else []))
        except _Captured as captured:
            parser = captured.parser
        else:
            raise AssertionError(f"{script}: its parser could not be found (no build_parser, "
                                 "and parse_args/main parsed nothing)")
        finally:
            argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = saved
    _PARSERS[key] = parser
    return parser


class _Deprecated(Exception):
    pass


def value_problem(action: argparse.Action, value: str) -> str | None:
    if PLACEHOLDER_VALUE.search(value):
        return None
    if action.choices is not None:
        # The value as written, before any type turns an old name into the new one.
        return None if value in action.choices else f"{value!r} is not one of {sorted(action.choices)}"
    if action.type is None or action.type is str:
        return None
    from common import cli

    def refuse(old, new):
        raise _Deprecated(f"deprecated; use {new}")

    saved = getattr(cli, "warn_deprecated", None)
    cli.warn_deprecated = refuse
    try:
        action.type(value)
    except _Deprecated as error:
        return f"{value!r}: {error}"
    except (argparse.ArgumentTypeError, ValueError, TypeError) as error:
        return f"{value!r} refused: {error}"
    finally:
        if saved is not None:
            cli.warn_deprecated = saved
    return None


def command_problems(command: Command, root: Path = REPO) -> list[str]:
    problems = []
    for tokens in simple_commands(tokenize(command.text)):
        invocation = script_invocation(tokens)
        if invocation is None:
            continue
        script, arguments = invocation
        where = f"{command.source}: {script}"
        if not (root / script).is_file():
            problems.append(f"{where}: no such script")
            continue
        parser = parser_for(script, root)
        actions = parser._option_string_actions
        index = 0
        while index < len(arguments):
            token = arguments[index]
            index += 1
            if "..." in token or not token.startswith("-") or re.match(r"^-\d", token) or token == "-":
                continue
            name, has_value, inline = token.partition("=")
            action = actions.get(name)
            if action is None:
                problems.append(f"{where}: unknown option {name}")
                continue
            if type(action).__name__ == "DeprecatedOption":
                problems.append(f"{where}: {name} is deprecated")
            if action.nargs == 0:
                continue
            if has_value:
                values = [inline]
            elif action.nargs in (None, "?") or isinstance(action.nargs, int):
                count = 1 if action.nargs in (None, "?") else action.nargs
                values = []
                while len(values) < count and index < len(arguments) and (
                        not arguments[index].startswith("-") or arguments[index] == "-"
                        or re.match(r"^-\d", arguments[index])):
                    values.append(arguments[index])
                    index += 1
                if not values and action.nargs != "?":
                    problems.append(f"{where}: {name} needs a value")
            else:  # + or *: every following non-option token
                values = []
                while index < len(arguments) and (not arguments[index].startswith("-") or arguments[index] == "-"):
                    values.append(arguments[index])
                    index += 1
            for value in values:
                problem = value_problem(action, value)
                if problem:
                    problems.append(f"{where}: {name} {problem}")
    return problems


# ------------------------------------------------------------------------------ the tests

def test_there_are_docs_to_check():
    files = doc_files()
    assert REPO / "README.md" in files
    assert any(path.parent.name == "docs" for path in files), "no Markdown page under docs/"
    assert sum(len(doc_commands(path)) for path in files) > 20, "too few command lines found: the reader is broken"


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_lead_somewhere(path):
    problems = link_problems(path)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_command_lines_use_real_scripts_and_options(path):
    problems = [problem for command in doc_commands(path) for problem in command_problems(command)]
    assert not problems, "\n".join(problems)


def test_readme_stays_short():
    lines = (REPO / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 300, f"README.md has {lines} lines; its detail belongs in docs/"


def test_the_scripts_parsers_load_without_torch():
    scripts = sorted({invocation[0] for path in doc_files() for command in doc_commands(path)
                      for tokens in simple_commands(tokenize(command.text))
                      if (invocation := script_invocation(tokens)) and (REPO / invocation[0]).is_file()})
    assert "inference.py" in scripts
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from tests import test_docs as t\n"
            "for script in json.loads(sys.argv[2]): t.parser_for(script)\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'nemo', 'torch_npu'))\n"
            "assert not heavy, heavy")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([sys.executable, "-c", code, str(REPO), json.dumps(scripts)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_checker_catches_a_broken_link_and_a_bogus_option(tmp_path):
    """The checks above, on a page made to fail: they must name both problems."""
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "page.md"
    page.write_text("# A page\n\n## Its section\n\n[ok](#its-section) [ok too](page.md#a-page)\n"
                    "[gone](missing.md) [no heading](page.md#nowhere)\n\n"
                    "```bash\n.venv/bin/python inference.py --audio a.wav \\\n    --no-such-option 3 && "
                    "python accuracy_run_perf.py --engine nemo,direct\n"
                    "torchrun --nproc-per-node 2 inference.py --output-format yaml\npython missing.py --x\n```\n"
                    "Inline: `python check_accuracy_run_perf.py --dry-run --bogus`.\n", encoding="utf-8")
    for script in ("inference.py", "accuracy_run_perf.py", "check_accuracy_run_perf.py"):
        (tmp_path / script).symlink_to(REPO / script)
    links = link_problems(page, tmp_path)
    assert len(links) == 2 and "missing.md does not exist" in links[0] and "#nowhere" in links[1], links
    problems = [p for command in doc_commands(page, tmp_path) for p in command_problems(command, tmp_path)]
    text = "\n".join(problems)
    for expected in ("unknown option --no-such-option", "deprecated; use --engine batched", "'yaml' is not one of",
                     "missing.py: no such script", "unknown option --bogus"):
        assert expected in text, text
    assert len(problems) == 5, text


def test_github_slugs():
    assert github_slug("Set up and run") == "set-up-and-run"
    assert github_slug("`inference.py`: transcribe") == "inferencepy-transcribe"
    assert github_slug("Long runs: streaming, resume, what Ctrl-C keeps") == "long-runs-streaming-resume-what-ctrl-c-keeps"
    assert github_slug("Decoding on an NPU: eager, graphs, or the decoder on the CPU") == \
        "decoding-on-an-npu-eager-graphs-or-the-decoder-on-the-cpu"
    assert github_slug("Whole server: every card with torchrun") == "whole-server-every-card-with-torchrun"

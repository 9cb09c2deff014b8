"""The documentation's commands exist: every `mcqa ...` line of README.md and docs/ against the CLI.

Each command line in a fenced code block (bash, sh, console, text or none; `\\` continuations joined)
and each inline code span that starts with `mcqa ` is checked against the Typer app's click command
tree, without running anything: the subcommand path exists, every `--option` / `-o` is one of that
command's, no more positional arguments than it takes, and every `--set section.key=value` names a
config key (mcqa.config.Config). YAML blocks made of `llm:` / `agent:` sections are checked against the
config's keys too.

Conventions of the docs (the checker's rules):
- a line holding `...` or `…` is a sketch, not a command: skipped;
- `[` and `]` around words mark optional parts: the brackets are dropped and the words checked;
- `|` between bracketed alternatives is skipped; `zsum|rrf` inside a value is the value's business.

No model is loaded and no command runs: importing `mcqa.cli` and walking its click tree takes a second.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer.main
import yaml

from mcqa.cli import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
GENERATED = {"reference/config.md"}  # docs pages written at build time (docs/gen_config_reference.py)
PLACEHOLDERS = ("...", "…")
SHELL_LANGS = {"", "bash", "sh", "shell", "console", "text"}
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
SPAN = re.compile(r"(?<!`)`(?!`)((?:[^`\n]|\n(?![ \t]*\n))+?)`(?!`)")


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


@dataclass(frozen=True)
class Command:
    where: str  # file:line
    text: str  # the command line as written (continuations joined)


# --- collecting -------------------------------------------------------------------------------------


def split_fences(text: str) -> tuple[list[tuple[int, str, list[str]]], str]:
    """(fenced blocks as (first line number, language, lines), the text with those blocks blanked)."""
    blocks, prose, lines = [], [], text.split("\n")
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            prose.append(lines[i])
            i += 1
            continue
        fence, lang = match.group(1), match.group(2).lower()
        body, start = [], i + 2
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        blocks.append((start, lang, body))
        prose.extend([""] * (len(body) + 2))
        i += 1
    return blocks, "\n".join(prose)


def strip_comment(line: str) -> str:
    """The line up to a shell comment: a `#` at the start of a word, outside quotes."""
    quote = None
    for pos, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (pos == 0 or line[pos - 1].isspace()):
            return line[:pos]
    return line


def logical_lines(body: list[str], first: int) -> list[tuple[int, str]]:
    """Lines with `\\` continuations joined, each with the number of its first line."""
    out, pending, start = [], "", first
    for offset, raw in enumerate(body):
        line = strip_comment(raw).rstrip()
        if not pending:
            start = first + offset
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


def is_mcqa(token: str) -> bool:
    return token == "mcqa" or token.endswith("/mcqa")


def collect(text: str, name: str) -> list[Command]:
    """Every `mcqa` command line of one Markdown text: fenced shell blocks and inline code spans."""
    blocks, prose = split_fences(text)
    found = []
    for first, lang, body in blocks:
        if lang not in SHELL_LANGS:
            continue
        for number, line in logical_lines(body, first):
            words = line.split()
            while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):  # VAR=value mcqa ...
                words.pop(0)
            if words and is_mcqa(words[0].lstrip("$")):
                found.append(Command(f"{name}:{number}", " ".join(words)))
    for match in SPAN.finditer(prose):
        span = " ".join(match.group(1).split())
        if span.startswith("mcqa ") or span == "mcqa":
            found.append(Command(f"{name}:{prose.count(chr(10), 0, match.start()) + 1}", span))
    return found


def yaml_blocks(text: str, name: str) -> list[tuple[str, str]]:
    blocks, _ = split_fences(text)
    return [(f"{name}:{first}", "\n".join(body)) for first, lang, body in blocks if lang in ("yaml", "yml")]


# --- checking ---------------------------------------------------------------------------------------


def cli_tree():
    """A fresh click command tree of `mcqa` (each call builds new objects, safe to alter in a test)."""
    return typer.main.get_command(app)


def is_argument(param) -> bool:
    return not any(opt.startswith("-") for opt in param.opts)


def takes_value(param) -> bool:
    return not (getattr(param, "is_flag", False) or getattr(param, "count", False))


def config_key_problem(dotted: str) -> str | None:
    """None if `section.key[.key...]` is a key of mcqa.config.Config, else why not."""
    from pydantic import BaseModel

    from mcqa.config import Config

    model, walked = Config, []
    for part in dotted.split("."):
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return f"config key {dotted!r}: {'.'.join(walked)} is not a section"
        if part not in model.model_fields:
            known = ", ".join(model.model_fields)
            return f"config key {dotted!r}: no {part!r} in {'.'.join(walked) or 'the config'} (known: {known})"
        model, walked = model.model_fields[part].annotation, [*walked, part]
    return None


def check(line: str, root=None) -> list[str]:
    """What is wrong with one `mcqa ...` command line; [] when it matches the CLI (or is a sketch)."""
    if any(mark in line for mark in PLACEHOLDERS):
        return []
    try:
        tokens = shlex.split(line)
    except ValueError as exc:
        return [f"cannot split the line: {exc}"]
    command, path, rest = root or cli_tree(), ["mcqa"], tokens[1:]
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        sub = command.commands.get(rest[0])
        if sub is None:
            if getattr(command, "invoke_without_command", False) and command.params:
                break
            return [f"`{' '.join(path)}` has no command {rest[0]!r} (it has {', '.join(command.commands)})"]
        command, path, rest = sub, [*path, rest[0]], rest[1:]
    where = " ".join(path)
    options = {opt: p for p in command.params for opt in (*p.opts, *p.secondary_opts) if opt.startswith("-")}
    capacity = sum(p.nargs if p.nargs >= 0 else 10**6 for p in command.params if is_argument(p))
    problems, positionals, pending, depth, last_option, skip_next = [], [], 0, 0, "", False
    for raw in rest:
        token = raw.lstrip("[")  # `[--limit L | --sample N]`: optional parts, checked like the rest
        depth += len(raw) - len(token)
        closed = len(token) - len(token.rstrip("]")) if depth and "[" not in token else 0
        token = token[: len(token) - closed]
        skip, skip_next = skip_next, False
        if pending:
            pending -= 1
            if last_option == "--set":
                key, sep, _ = token.partition("=")
                problem = config_key_problem(key) if sep else f"--set takes section.key=value, got {token!r}"
                if problem:
                    problems.append(problem)
        elif token == "|" and depth:
            pass
        elif token == "|":
            break  # a pipe into another program: the mcqa command ends here
        elif re.match(r"^-{1,2}[A-Za-z]", token):
            name, sep, value = token.partition("=")
            last_option = name
            if name == "--help":
                pass
            elif name not in options:
                problems.append(f"`{where}` has no option {name} (it has {', '.join(sorted(options))})")
                skip_next = not sep  # the unknown option's value, if one follows, is no argument
            elif takes_value(options[name]) and not sep:
                pending = max(1, options[name].nargs)
            elif name == "--set" and sep:
                problem = config_key_problem(value.partition("=")[0])
                if problem:
                    problems.append(problem)
        elif token and not skip:
            positionals.append(token)
        depth = max(0, depth - closed)
    if len(positionals) > capacity:
        problems.append(f"`{where}` takes {capacity} argument(s), got {len(positionals)}: {positionals}")
    return problems


def yaml_problems(source: str) -> list[str]:
    """Keys of a YAML block of `llm` / `agent` sections that the config does not have."""
    try:
        data = yaml.safe_load(source)
    except yaml.YAMLError:
        return []
    if not isinstance(data, dict) or not data or not set(data) <= {"llm", "agent"}:
        return []
    problems = []

    def walk(node, prefix):
        for key, value in node.items():
            dotted = f"{prefix}.{key}" if prefix else str(key)
            problem = config_key_problem(dotted)
            if problem:
                problems.append(problem)
            elif isinstance(value, dict):
                walk(value, dotted)

    walk(data, "")
    return problems


# --- the tests --------------------------------------------------------------------------------------

ALL_COMMANDS = [c for path in doc_files() for c in collect(path.read_text(), str(path.relative_to(ROOT)))]


def test_the_docs_hold_commands_to_check():
    """The collector finds the README's and the docs' command lines (a broken collector checks nothing)."""
    readme = [c for c in ALL_COMMANDS if c.where.startswith("README.md")]
    assert len(readme) >= 10, readme
    assert len(ALL_COMMANDS) >= 60
    paths = {" ".join(c.text.split()[:3]) for c in ALL_COMMANDS}
    assert {"mcqa eval run", "mcqa eval compare", "mcqa kaggle bundle"} <= paths


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda c: c.where)
def test_every_documented_command_exists(command):
    assert check(command.text) == [], f"{command.where}: {command.text}"


@pytest.mark.parametrize(
    "block", [b for p in doc_files() for b in yaml_blocks(p.read_text(), str(p.relative_to(ROOT)))], ids=lambda b: b[0]
)
def test_every_documented_config_key_exists(block):
    where, source = block
    assert yaml_problems(source) == [], where


@pytest.mark.parametrize(
    "line, complaint",
    [
        ("mcqa eval run --dataset arc_challenge --no-such-option 3 --out runs/x", "no option --no-such-option"),
        ("mcqa eval runn --dataset arc_challenge", "has no command 'runn'"),
        ("mcqa trace show runs/arc 24 25", "takes 2 argument(s)"),
        ("mcqa eval run --dataset eedi --set agent.no_such_key=1 --out runs/x", "no 'no_such_key'"),
        ("mcqa eval run --dataset eedi --set=agent.votes.deeper=1 --out runs/x", "is not a section"),
        ("mcqa solve --dataset mmlu_stem [--limit 200 | --nope 3]", "no option --nope"),
    ],
)
def test_the_checker_catches_a_wrong_command(line, complaint):
    problems = check(line)
    assert any(complaint in p for p in problems), problems


def test_the_checker_passes_right_commands():
    assert check("mcqa eval run --dataset quiz.csv -c question=Q -c choices=A,B,C,D --out runs/quiz") == []
    assert check('mcqa trace --dataset codemmlu_fpt --item k10196 --set "agent.tools=[execute]"') == []
    assert check("mcqa eval run --dataset D --split S [--limit L | --sample N] --set agent.permutations=K") == []
    assert check("mcqa eval run ... --ray auto") == []  # a sketch
    assert check("mcqa trace show runs/arc 24 --jsonl trace-24.jsonl") == []


def test_a_renamed_option_fails_the_readme():
    """Rename `eval run --limit` to `--max-items` in a copy of the CLI: the README's lines that use
    `--limit` must now fail, and nothing else about them."""
    tree = cli_tree()
    run = tree.commands["eval"].commands["run"]
    limit = next(p for p in run.params if "--limit" in p.opts)
    limit.opts = ["--max-items" if o == "--limit" else o for o in limit.opts]
    readme = collect((ROOT / "README.md").read_text(), "README.md")
    uses = [c for c in readme if c.text.startswith("mcqa eval run") and "--limit" in c.text.split()]
    assert uses, "the README should show `mcqa eval run ... --limit N`"
    for command in uses:
        problems = check(command.text, root=tree)
        assert problems and all("no option --limit" in p for p in problems), (command, problems)
    assert all(check(c.text) == [] for c in uses)  # the real CLI still has --limit


def test_a_renamed_option_in_the_docs_text_fails():
    """A copy of the README with one option misspelt is caught, with the file and line."""
    text = (ROOT / "README.md").read_text().replace("--out runs/arc-k4", "--outt runs/arc-k4", 1)
    bad = [(c.where, p) for c in collect(text, "README.md") for p in check(c.text)]
    assert bad and all("no option --outt" in p for _, p in bad), bad


def test_wrong_config_yaml_is_caught():
    assert yaml_problems("agent:\n  few_shots: 3\n") and yaml_problems("llm:\n  modle: x\n")
    assert yaml_problems("agent:\n  few_shot: 3\n  prompts:\n    verify: 'x'\nllm:\n  model: m\n") == []


# --- the site ---------------------------------------------------------------------------------------


def _mkdocs_config() -> dict:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)
    return yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=Loader)


def _nav_pages(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [page for entry in node for page in _nav_pages(entry)]
    if isinstance(node, dict):
        return [page for value in node.values() for page in _nav_pages(value)]
    return []


def test_every_docs_page_is_in_the_nav_and_every_nav_page_exists():
    nav = _nav_pages(_mkdocs_config()["nav"])
    on_disk = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert sorted(on_disk - set(nav)) == []
    assert sorted(set(nav) - on_disk - GENERATED) == []


def test_the_config_reference_lists_every_key():
    """docs/gen_config_reference.py renders every field of the config's three models."""
    from mcqa.agent.config import AgentConfig
    from mcqa.agent.prompts import Prompts
    from mcqa.config import LLMConfig

    spec = importlib.util.spec_from_file_location("gen_config_reference", DOCS / "gen_config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    page = module.render()
    keys = [f"llm.{k}" for k in LLMConfig.model_fields]
    keys += [f"agent.{k}" for k in AgentConfig.model_fields if k != "prompts"]
    keys += [f"agent.prompts.{k}" for k in Prompts.model_fields]
    assert [k for k in keys if f"`{k}`" not in page] == []
    assert "Defaults by dataset" in page
    commands = collect(page, "reference/config.md")
    assert commands and [(c.where, check(c.text)) for c in commands if check(c.text)] == []


def test_results_keeps_the_defaults_placeholder_section():
    text = (DOCS / "results.md").read_text()
    assert "## Defaults by dataset" in text

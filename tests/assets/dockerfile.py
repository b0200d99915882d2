"""Reading a Dockerfile and a .dockerignore the way `docker build` does, closely enough to
check the image's properties and to rebuild its build context without Docker."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    flags: dict[str, str]  # --mount=..., --from=..., --interval=...
    args: str  # the rest, as written (continuations joined)

    @property
    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, else None."""
        if not self.args.startswith("["):
            return None
        value = json.loads(self.args)
        assert isinstance(value, list)
        return [str(v) for v in value]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    args: dict[str, str]  # global ARGs (before the first FROM) and their defaults
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)


_FLAG = re.compile(r"--([a-z-]+)=(\S+)\s*")


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue  # comments, parser directives, blank lines
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1].rstrip() + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current.strip())
    return lines


def parse(path: Path) -> Dockerfile:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text(encoding="utf-8")):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        flags: dict[str, str] = {}
        while match := _FLAG.match(rest):
            flags[match[1]] = match[2]
            rest = rest[match.end() :]
        if keyword == "ARG" and not stages:
            arg, _, default = rest.partition("=")
            args[arg] = default
            continue
        if keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m[1], m[0]), words[0])
            stage = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, stage))
            continue
        stages[-1].instructions.append(Instruction(keyword, flags, rest))
    return Dockerfile(args, stages)


def shell_words(instruction: Instruction) -> list[str]:
    return instruction.exec_form or shlex.split(instruction.args)


# --- .dockerignore --------------------------------------------------------------------


@dataclass(frozen=True)
class Pattern:
    regex: re.Pattern[str]
    negated: bool
    text: str


def _regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def ignore_patterns(path: Path) -> list[Pattern]:
    patterns = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        text = line[1:] if negated else line
        text = text.strip("/")
        patterns.append(Pattern(_regex(text), negated, text))
    return patterns


def excluded(relative: str, patterns: list[Pattern]) -> bool:
    """Whether `docker build` leaves `relative` (a path with /) out of the context: the
    last pattern matching the path or one of its parents decides."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        if any(pattern.regex.match(c) for c in candidates):
            result = not pattern.negated
    return result


def context_files(root: Path, dockerignore: Path) -> list[str]:
    """Every file `docker build root` would send, as paths relative to `root`."""
    patterns = ignore_patterns(dockerignore)
    reincluded = {p.text.split("/")[0] for p in patterns if p.negated}
    files = []
    for top in sorted(root.iterdir()):
        if excluded(top.name, patterns) and top.name not in reincluded:
            continue  # nothing below can come back: do not walk .venv or .git
        walk = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in walk:
            relative = path.relative_to(root).as_posix()
            if not excluded(relative, patterns):
                files.append(relative)
    return files

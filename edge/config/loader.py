"""The one config loader: YAML file → validated NodeConfig, or errors a technician can act on."""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from edge.config.model import NodeConfig

log = logging.getLogger(__name__)

# Sections renamed to say what they configure: old name → new. The old name still loads,
# with a warning (check-config prints it; the node logs it).
RENAMED = {"outbox": "backlog"}


class ConfigError(Exception):
    """The config file cannot be used; `problems` has one line per bad field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))

    def report(self) -> str:
        lines = [f"{self.source}: {len(self.problems)} problem(s)"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


def load_config(path: Path, warnings: list[str] | None = None) -> NodeConfig:
    """Read and validate one node's config file. Warnings (an old section name) go into
    `warnings` if given, else to the log."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(str(path), [f"cannot read file: {e.strerror or e}"]) from e
    return parse_config(text, source=str(path), warnings=warnings)


def parse_config(text: str, *, source: str = "<config>",
                 warnings: list[str] | None = None) -> NodeConfig:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(source, [f"{where}not valid YAML ({problem})"]) from e
    if not isinstance(data, dict):
        raise ConfigError(source, ["the file must be a YAML mapping of sections (node, hub, ...)"])
    for old, new in RENAMED.items():
        if old not in data:
            continue
        if new in data:
            raise ConfigError(source, [f"{old}: the old name of the '{new}' section, which is "
                                       f"there too: keep only '{new}'"])
        data[new] = data.pop(old)
        note = f"{old}: the old name of the '{new}' section; rename it to '{new}'"
        if warnings is None:
            log.warning("%s: %s", source, note)
        else:
            warnings.append(note)
    try:
        return NodeConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(source, [_describe(err) for err in e.errors()]) from e


def _describe(err: ErrorDetails) -> str:
    loc = err["loc"]
    where = ".".join(str(part) for part in loc) or "(top level)"
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        hint = _did_you_mean(loc)
        return f"{where}: unknown field{hint}"
    if kind == "missing":
        return f"{where}: required field is missing"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        lo, hi = _bounds(loc)
        if lo is not None and hi is not None:
            return f"{where}: must be {lo}..{hi}, got {value!r}"
    if kind == "string_pattern_mismatch":
        found = _walk(loc)
        field = found[0].model_fields.get(found[1]) if found else None
        rule = field.description if field and field.description else err["msg"]
        return f"{where}: {rule[:1].lower() + rule[1:]}, got {value!r}"
    if kind == "string_too_short" and err.get("ctx", {}).get("min_length") == 1:
        return f"{where}: must not be empty"
    message = err["msg"].removeprefix("Value error, ")
    if kind.endswith("_type") or kind.endswith("_parsing") or kind == "literal_error":
        return f"{where}: {message}, got {value!r}"
    return f"{where}: {message}"


def _walk(loc: tuple[int | str, ...]) -> tuple[type[BaseModel], str] | None:
    """The model owning the last named step of loc, and that step (known field or not)."""
    model: type[BaseModel] | None = NodeConfig
    found: tuple[type[BaseModel], str] | None = None
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None:
            break
        found = (model, part)
        if part not in model.model_fields:
            break
        model = _model_in(model.model_fields[part].annotation)
    return found


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _bounds(loc: tuple[int | str, ...]) -> tuple[Any, Any]:
    found = _walk(loc)
    if found is None or found[1] not in found[0].model_fields:
        return None, None
    lo = hi = None
    for rule in found[0].model_fields[found[1]].metadata:
        lo = getattr(rule, "ge", getattr(rule, "gt", lo))
        hi = getattr(rule, "le", getattr(rule, "lt", hi))
    return lo, hi


def _did_you_mean(loc: tuple[int | str, ...]) -> str:
    found = _walk(loc)
    if found is None:
        return ""
    close = difflib.get_close_matches(found[1], list(found[0].model_fields), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""

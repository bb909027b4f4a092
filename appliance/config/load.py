"""TOML → :class:`~appliance.config.schema.Config`, validated, with every problem reported at once.

Theory of operation. The document is parsed with :mod:`tomllib`, then one generic walker builds the schema
from the dataclasses' annotations: a table becomes a dataclass, an array a tuple, a string a ``TextValue``
when the annotation asks for one, and ``Literal`` fields accept only their listed strings. A key left out
takes its default (a nested table's defaults come from the enclosing default object, so ``[metrics] port =
9999`` keeps the default listen address). For each key the walker checks the TOML type against the
annotation and then the field's rule; both failures produce the field's ``expected …, got …`` sentence.
Unknown keys are reported with the closest known key. Once every field of an object is valid its
``cross_check`` runs. Nothing stops at the first problem: all issues are collected and raised together as
one :class:`ConfigError`.

The loader is total: for any text it returns a ``Config`` or raises ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal, get_args, get_origin, get_type_hints

from appliance.config.errors import ConfigError, ConfigIssue, ConfigReadError
from appliance.config.rules import Rule, expected, rule_of
from appliance.config.schema import Config, TextValue

MAX_FILE_SIZE: Final = 1 << 20  # a configuration is a few kilobytes; anything near this is not one


class _Invalid:
    """Marks a value that failed; the issue explaining why has already been recorded."""


_INVALID: Final = _Invalid()
_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")
_TOML_POSITION: Final = re.compile(r"\s*\((at line (\d+), column (\d+)|at end of document)\)\Z")


def load_config(path: str | Path | None) -> Config:
    """Load and validate the configuration file at ``path``; ``None`` gives the embedded defaults.

    Raises :class:`ConfigReadError` if the file cannot be read and :class:`ConfigError` if it is not a valid
    configuration. Relative file paths inside the document (TLS files, ``state_dir``) are relative to the
    working directory of the appliance, not to the file.
    """
    if path is None:
        return Config()
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_SIZE + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigReadError([ConfigIssue("", f"cannot read {path}: {reason}")]) from None
    if len(data) > MAX_FILE_SIZE:
        raise ConfigError([ConfigIssue("", f"file is larger than {MAX_FILE_SIZE} bytes")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigIssue("", f"file is not UTF-8 text (byte {exc.start})")]) from None
    return load_config_text(text)


def load_config_text(text: str) -> Config:
    """Parse and validate a TOML document; raises :class:`ConfigError` listing every issue."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_issue(str(exc))]) from None
    except RecursionError:
        raise ConfigError(
            [ConfigIssue("", "TOML syntax error: arrays or tables nested too deeply")]
        ) from None
    return build_config(document)


def build_config(document: Mapping[str, Any]) -> Config:
    """Build a validated ``Config`` from an already parsed TOML document (a dict as :mod:`tomllib` gives)."""
    walker = _Walker()
    config = walker.table(Config, document, "", Config())
    if walker.issues or not isinstance(config, Config):
        raise ConfigError(walker.issues)
    return config


def build_field(cls: type[Any], name: str, raw: object) -> Any:
    """Field ``name`` of schema dataclass ``cls`` built from ``raw`` (TOML-like data) by the rules
    :func:`build_config` applies to it, issues named from the field (``routes[0].match``); the object's
    ``cross_check`` is not run. Raises :class:`ConfigError` listing every issue."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    walker = _Walker()
    value = walker.value(get_type_hints(cls)[name], raw, name, rule_of(field.metadata), None)
    if walker.issues or value is _INVALID:
        raise ConfigError(walker.issues)
    return value


def check_file(path: str | Path) -> tuple[bool, str]:
    """Validate a file without starting anything.

    Returns ``(True, "OK: <path>")`` or ``(False, report)`` where the report has one line per issue.
    """
    try:
        load_config(path)
    except ConfigError as exc:
        return False, "\n".join(str(issue) for issue in exc.errors)
    return True, f"OK: {path}"


def _syntax_issue(message: str) -> ConfigIssue:
    m = _TOML_POSITION.search(message)
    if m is None:
        return ConfigIssue("", f"TOML syntax error: {message}")
    where = f"line {m.group(2)}, column {m.group(3)}" if m.group(2) else "end of document"
    return ConfigIssue("", f"TOML syntax error at {where}: {message[: m.start()]}")


def _join(path: str, key: str) -> str:
    shown = key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)
    return f"{path}.{shown}" if path else shown


def _type_words(tp: Any) -> str:
    """How a value of annotation ``tp`` is described when no rule words it better."""
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if get_origin(tp) is Literal:
        options = [f'"{a}"' for a in get_args(tp)]
        return "one of " + ", ".join(options[:-1]) + " or " + options[-1] if len(options) > 1 else options[0]
    if get_origin(tp) is tuple:
        return "an array"
    if isinstance(tp, type) and issubclass(tp, TextValue):
        return tp.EXPECTED
    return "a table"


class _Walker:
    """Builds schema objects from TOML values, recording issues instead of stopping at the first."""

    def __init__(self) -> None:
        self.issues: list[ConfigIssue] = []

    def _issue(self, path: str, message: str) -> _Invalid:
        self.issues.append(ConfigIssue(path, message))
        return _INVALID

    def table(self, cls: type[Any], raw: object, path: str, base: object | None) -> Any:
        """A dataclass from a TOML table; missing keys come from ``base`` or the field defaults."""
        if not isinstance(raw, dict):
            return self._issue(path, expected("a table", raw))
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        valid = True
        for key, value in raw.items():
            field = fields.get(key)
            if field is None:
                self._issue(_join(path, key), _unknown_key(key, list(fields)))
                continue
            default = _default_of(field, base)
            values[key] = self.value(hints[key], value, _join(path, key), rule_of(field.metadata), default)
            valid = valid and values[key] is not _INVALID
        for key, field in fields.items():
            if key in values:
                continue
            default = _default_of(field, base)
            if default is None:
                words = _words(hints[key], rule_of(field.metadata))
                self._issue(_join(path, key), f"missing; expected {words}")
                valid = False
            else:
                values[key] = default
        if not valid:
            return _INVALID
        obj = cls(**values)
        cross_check = getattr(obj, "cross_check", None)
        if cross_check is not None:
            problems = list(cross_check())
            for relative, message in problems:
                sub = relative if not path else f"{path}.{relative}" if relative else path
                self._issue(sub, message)
            if problems:
                return _INVALID
        return obj

    def value(self, tp: Any, raw: object, path: str, rule: Rule | None, default: object | None) -> Any:
        """One field's value: type conversion per the annotation, then the field's rule."""
        words = _words(tp, rule)
        origin = get_origin(tp)
        converted: object
        if tp is bool:
            converted = raw if isinstance(raw, bool) else _INVALID
        elif tp is int:
            converted = raw if isinstance(raw, int) and not isinstance(raw, bool) else _INVALID
        elif tp is float:
            ok = isinstance(raw, int | float) and not isinstance(raw, bool)
            converted = float(raw) if ok else _INVALID  # type: ignore[arg-type]
        elif tp is str:
            converted = raw if isinstance(raw, str) else _INVALID
        elif origin is Literal:
            converted = raw if isinstance(raw, str) and raw in get_args(tp) else _INVALID
        elif origin is tuple:
            return self._array(tp, raw, path, rule)
        elif isinstance(tp, type) and issubclass(tp, TextValue):
            if not isinstance(raw, str):
                return self._issue(path, expected(words, raw))
            try:
                converted = tp.parse(raw)
            except ValueError as exc:
                return self._issue(path, _with_reason(expected(words, raw), str(exc)))
        elif dataclasses.is_dataclass(tp) and isinstance(tp, type):
            return self.table(tp, raw, path, default)
        else:  # a schema annotation this walker does not know: a programming error, not an operator's
            raise TypeError(f"unsupported configuration annotation {tp!r} at {path}")
        if converted is _INVALID:
            return self._issue(path, expected(words, raw))
        if rule is not None and rule.check is not None:
            reason = rule.check(converted)
            if reason is not None:
                return self._issue(path, _with_reason(expected(words, raw), reason))
        return converted

    def _array(self, tp: Any, raw: object, path: str, rule: Rule | None) -> Any:
        words = _words(tp, rule)
        if not isinstance(raw, list):
            return self._issue(path, expected(words, raw))
        args = get_args(tp)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"only tuple[X, ...] is supported in the configuration schema, not {tp!r}")
        item_rule = rule.item if rule is not None else None
        items = [self.value(args[0], v, f"{path}[{i}]", item_rule, None) for i, v in enumerate(raw)]
        if any(v is _INVALID for v in items):
            return _INVALID
        result = tuple(items)
        if rule is not None and rule.check is not None:
            reason = rule.check(result)
            if reason is not None:
                return self._issue(path, _with_reason(expected(words, raw), reason))
        return result


def _words(tp: Any, rule: Rule | None) -> str:
    return rule.expected if rule is not None else _type_words(tp)


def _with_reason(message: str, reason: str) -> str:
    return f"{message}; {reason}" if reason else message


def _default_of(field: dataclasses.Field[Any], base: object | None) -> object | None:
    """The value a missing key takes: from the enclosing default object, else the field default."""
    value: object | None = None
    if base is not None:
        value = getattr(base, field.name)
    elif field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    return value


def _unknown_key(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f'unknown key; did you mean "{close[0]}"?'
    return "unknown key; known keys are " + ", ".join(known)


__all__ = ["MAX_FILE_SIZE", "build_config", "build_field", "check_file", "load_config", "load_config_text"]

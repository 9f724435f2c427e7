"""Errors the operator can fix, and how the CLI tells them apart from bugs.

`tessera` (tessera/cli.py) prints an error of one of the kinds below as one line on stderr,
`tessera <command>: <message>`, and exits with code 2; any other exception is a bug and keeps its
traceback (exit code 1). `tessera --debug ...` shows the traceback of a user error too.
"""

from __future__ import annotations

import sys


class UserError(Exception):
    """Bad input or configuration the operator can fix: a file, an option's value, a setting.
    The message names the file, option or variable and the value refused."""


# The domain's own errors for bad input, by module and class name (`ml` cannot import tessera, so
# its errors cannot derive from UserError). A class counts only once its module is imported:
# nothing else can have raised it, and the CLI stays quick to start.
DOMAIN_USER_ERRORS = {
    "tessera.settings": ("ConfigurationError",),
    "tessera.privacy.pseudonym": ("InsecureSaltError",),
    "tessera.config_files": ("FieldProblem",),
    "tessera.identity.cli": ("InputError",),
    "tessera.landing.mapping_schema": ("MappingError",),
    "tessera.landing.loader": ("LandingError",),
    "tessera.segments.rules": ("SegmentRuleError",),
    "tessera.decisioning.catalogue": ("CatalogueError",),
    "tessera.decisioning.templates": ("TemplateError",),
    "tessera.realtime.redis_server": ("RedisUnavailable",),
    "tessera.db": ("DuckDBLockTimeout",),
    "ml.rec_features": ("FeatureTypeError",),
    "ml.rec_tuning": ("TuningError",),
}
# a path that is missing, a folder where a file belongs (or the reverse), a file not readable
OS_USER_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def user_error_types() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [UserError, *OS_USER_ERRORS]
    for module, names in DOMAIN_USER_ERRORS.items():
        if module in sys.modules:
            found.extend(getattr(sys.modules[module], name) for name in names)
    return tuple(found)


def one_line(exc: BaseException) -> str:
    """The error's message on one line: a file error names its file; a message of several lines
    (every problem of a configuration, a YAML parser's report) is joined with '; ', without list
    bullets and the parser's caret lines."""
    if isinstance(exc, OSError) and exc.filename is not None:
        text = f"{exc.filename}: {(exc.strerror or str(exc)).lower()}"
    else:
        text = str(exc) or type(exc).__name__
    joined = ""
    for line in text.splitlines():
        line = " ".join(line.split()).removeprefix("- ")  # a list of problems: one after the other
        if line.strip("^ "):
            joined += (" " if joined.endswith(":") else "; " if joined else "") + line
    return joined

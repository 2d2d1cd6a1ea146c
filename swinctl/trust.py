"""What swinctl accepts from the recipes, sweep files and overrides it is handed, none of which it trusts.

swinctl trusts the codebases' own config trees (`mmdet::`, `mmseg::`), its own code and nothing else. MMEngine
executes a config's `_base_` files as Python, imports `custom_imports`, imports `<scope>.registry` for a
`default_scope`, and resolves a dotted `type` by importing its module: so a recipe or an override may name bases only
inside the codebases' trees, may not set imports or scopes of its own, and may name registered types only. Names that
become directories are plain words, and strings that end up in an sbatch script hold one line. Only `re` is imported
here: recipes are checked at CLI start.
"""

from __future__ import annotations

import re
from typing import Any

from swinctl.errors import UserError

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
SAFE_NAME_RULE = "use letters, digits, '.', '_' and '-', starting with a letter or digit (at most 80 characters)"

CODEBASE_SCOPES = ("mmdet", "mmseg")
REGISTRY_SCOPES = ("mmengine", "mmcv", "mmdet", "mmseg", "swinctl")
_BASE = re.compile(r"(mmdet|mmseg)::((?:[A-Za-z0-9_][A-Za-z0-9_.-]*/)*[A-Za-z0-9_][A-Za-z0-9_.-]*\.py)")
# A registered name, optionally in a known scope: `SwinTransformer`, `swinctl.SwinTransformer`, `mmdet.MaskRCNN`.
# A longer dotted path (`os.system`, `subprocess.Popen`) would make MMEngine's registry import it.
_TYPE = re.compile(rf"(?:(?:{'|'.join(REGISTRY_SCOPES)})\.)?[A-Za-z_][A-Za-z0-9_]*")
_SCOPE_KEYS = ("default_scope", "_scope_")
_FORBIDDEN_KEYS = {
    "custom_imports": "swinctl sets the imports itself (swinctl.models); a recipe or override may not add modules",
    "_base_": "bases are the recipe's `bases` field (mmdet::... or mmseg::... files)",
}
_SBATCH_OPTION = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class UntrustedInput(UserError):
    """Input that would make swinctl run code or write outside its runs root; the message says what to do."""


def check_name(name: str, what: str = "recipe name") -> str:
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        shown = repr(name if len(str(name)) <= 60 else f"{str(name)[:57]}...")
        raise UntrustedInput(f"{what} {shown}: {SAFE_NAME_RULE}")
    return name


_TRUSTED_BASES: set[tuple[str, str | None]] = set()  # (a sweep validates its recipe once per point)


def check_base(base: str, codebase: str | None = None) -> str:
    """A base config file inside a codebase's own config tree (`mmdet::_base_/default_runtime.py`)."""
    if isinstance(base, str) and (base, codebase) in _TRUSTED_BASES:
        return base
    match = _BASE.fullmatch(base) if isinstance(base, str) else None
    if match is None or ".." in match.group(2).split("/"):
        raise UntrustedInput(f"base '{base}': bases are config files of the codebases' own trees, written "
                             "mmdet::path/to/file.py or mmseg::path/to/file.py (swinctl never executes other files)")
    if codebase is not None and match.group(1) != codebase:
        raise UntrustedInput(f"base '{base}': a {codebase} recipe builds on {codebase}:: configs")
    _TRUSTED_BASES.add((base, codebase))
    return base


def check_one_line(value: str, what: str) -> str:
    if _CONTROL.search(value):
        raise UntrustedInput(f"{what} {value!r}: must be one line without control characters")
    return value


def check_sbatch_option(option: str) -> str:
    if not _SBATCH_OPTION.fullmatch(option):
        raise UntrustedInput(f"sbatch option '{option}': write the long option name without dashes "
                             "(e.g. gres, mail-type)")
    return option


def check_config_item(key: str, value: Any) -> None:
    """A config key a recipe's `config:`/`smoke.config:` section or a `--set` override sets, and its value."""
    parts = key.split(".")
    for part in parts:
        if part in _FORBIDDEN_KEYS:
            raise UntrustedInput(f"config key '{key}': {_FORBIDDEN_KEYS[part]}")
    if parts[-1] == "type":
        _check_type(value, key)
    elif parts[-1] in _SCOPE_KEYS:
        _check_scope(value, key)
    _check_value(value, key)


def _check_value(value: Any, where: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            path = f"{where}.{k}"
            if k in _FORBIDDEN_KEYS:
                raise UntrustedInput(f"config key '{path}': {_FORBIDDEN_KEYS[k]}")
            if k == "type":
                _check_type(v, path)
            elif k in _SCOPE_KEYS:
                _check_scope(v, path)
            _check_value(v, path)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_value(v, f"{where}.{i}")


def _check_type(value: Any, where: str) -> None:
    if isinstance(value, str) and not _TYPE.fullmatch(value):
        raise UntrustedInput(f"{where}={value!r}: a type is a registered name such as 'AdamW' or "
                             f"'swinctl.SwinTransformer' (scopes: {', '.join(REGISTRY_SCOPES)}); swinctl does not "
                             "import other modules")


def _check_scope(value: Any, where: str) -> None:
    if value is not None and value not in REGISTRY_SCOPES:
        raise UntrustedInput(f"{where}={value!r}: choose one of the registry scopes {', '.join(REGISTRY_SCOPES)}")

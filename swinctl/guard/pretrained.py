"""Before queueing: the backbone's pretrained weights resolve and load into the backbone with no missing and no
unexpected keys, in any layout swinctl's converters read (official, MMDet/MMSeg, timm; swinctl.models.checkpoints).

Where the weights come from, in order: a local file; for a URL, the torch hub cache MMEngine's loader downloads
into (``$TORCH_HOME/hub/checkpoints/<file name>``, so the job finds the same file); else the URL is downloaded
there once (atomically). ``SWINCTL_OFFLINE=1`` skips the download and says the weights were not verified. A file
that has been checked against a backbone is remembered (path, size, mtime and the backbone's shape) in
``$SWINCTL_CACHE/pretrained-checks.json`` (default ``~/.cache/swinctl``), so each user loads it once.

A mismatch (a Swin-S file for a Swin-T recipe, a ResNet, a damaged file) is one PretrainedError before anything is
written. The output norms (``norm0``..``norm3``) are new layers of a detection/segmentation backbone that ImageNet
weights never have: they are the only keys allowed to be missing, and the message says so.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from swinctl.errors import UserError
from swinctl.guard.deviations import NOTE, Deviation

_URL = re.compile(r"[a-z][a-z0-9+.-]*://")
_OUTPUT_NORM = re.compile(r"^norm\d+\.(weight|bias)$")
DOWNLOAD_TIMEOUT_S = 60


class PretrainedError(UserError):
    """The pretrained weights cannot be found, read, or do not fit the recipe's backbone."""


def cache_dir() -> Path:
    return Path(os.environ.get("SWINCTL_CACHE") or Path.home() / ".cache" / "swinctl")


def offline() -> bool:
    return os.environ.get("SWINCTL_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_checkpoints() -> Path:
    """torch.hub.get_dir()/checkpoints ($TORCH_HOME/hub, else $XDG_CACHE_HOME/torch/hub or ~/.cache/torch/hub)."""
    hub = Path(os.environ.get("TORCH_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
               / "torch") / "hub"
    return hub / "checkpoints"


def hub_path(url: str) -> Path:
    """Where MMEngine's URL loader (torch.hub.load_state_dict_from_url) keeps `url`'s file."""
    return hub_checkpoints() / os.path.basename(urllib.parse.urlparse(url).path)


def download(url: str, dest: Path, timeout: float = DOWNLOAD_TIMEOUT_S, *, what: str = "pretrained weights",
             fix: str = "put the file at {dest}, point model.backbone.pretrained at a local copy, or set "
                        "SWINCTL_OFFLINE=1 to queue without checking it",
             check: Callable[[Path], None] | None = None) -> Path:
    """`url` -> `dest`, whole or not at all: written under a temporary name, compared with the Content-Length the
    server announced, handed to `check` (which raises to refuse it), then renamed. `what` and `fix` word the error
    (`fix` may name `{dest}`)."""
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        raise PretrainedError(f"{what} {url}: only local files and http(s) URLs can be checked before queueing; "
                              "download the file and give its path instead")
    dest.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            shutil.copyfileobj(response, out, length=1 << 20)
            announced = response.headers.get("Content-Length")
            if announced and announced.isdigit() and out.tell() != int(announced):
                raise ValueError(f"the connection closed after {out.tell():,} of {int(announced):,} bytes")
        if check is not None:
            check(Path(partial))
        os.replace(partial, dest)
    except (OSError, urllib.error.URLError, ValueError, http.client.HTTPException) as exc:
        Path(partial).unlink(missing_ok=True)
        if isinstance(exc, UserError):  # `check` refused the file: its message says why
            raise
        if isinstance(exc, urllib.error.HTTPError):
            reason = f"HTTP {exc.code}: {exc.reason}"
        else:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise PretrainedError(f"{what} {url} cannot be downloaded ({reason}): {fix.format(dest=dest)}") from None
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return dest


def resolve(ref: str, fetch: bool = True) -> tuple[Path | None, str]:
    """(the local file of `ref`, where it came from), or (None, why) when offline (or, with `fetch=False`, a dry
    run) and not cached; a dry run also accepts a local file that is not on this machine."""
    if not _URL.match(ref):
        path = Path(ref).expanduser()
        if not fetch and not path.exists():
            return None, "not on this machine; a real run needs the file there"
        if not path.is_file():
            raise PretrainedError(f"pretrained weights {ref}: no such file")
        return path, "local file"
    cached = hub_path(ref)
    if cached.is_file():
        return cached, f"cached at {cached}"
    if offline():
        return None, "SWINCTL_OFFLINE is set and the file is not in the torch hub cache; the job downloads them"
    if not fetch:
        return None, ("not in the torch hub cache, and a dry run downloads nothing; a real run downloads them once "
                      "and checks them before submitting")
    return download(ref, cached), f"downloaded to {cached}"


def _backbone_kwargs(backbone: dict) -> dict:
    skip = {"type", "_delete_", "init_cfg", "pretrained", "convert_weights", "_scope_"}
    return {key: value for key, value in backbone.items() if key not in skip}


def _checks_file() -> Path:
    return cache_dir() / "pretrained-checks.json"


def _check_key(path: Path, kwargs: dict) -> str:
    stat = path.stat()
    shape = json.dumps(kwargs, sort_keys=True, default=str)
    return hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{shape}".encode()).hexdigest()[:24]


def _remembered() -> dict:
    try:
        data = json.loads(_checks_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember(key: str, summary: str) -> None:
    checks = _remembered()
    checks[key] = summary
    target = _checks_file()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps(checks, indent=1))
        partial.replace(target)
    except OSError:
        pass  # a cache that cannot be written only means checking again next time


def load_check(path: Path, backbone: dict, what: str = "pretrained weights") -> str:
    """Load `path` into swinctl's SwinTransformer built from the rendered `backbone` config; a one-line summary, or
    PretrainedError naming the missing, unexpected or mis-shaped keys."""
    kwargs = _backbone_kwargs(backbone)
    key = _check_key(path, kwargs)
    known = _remembered().get(key)
    if known:
        return known
    from swinctl.models.checkpoints import CheckpointError, extract_backbone
    from swinctl.models.swin import SwinTransformer

    try:
        model = SwinTransformer(**kwargs)
    except (TypeError, ValueError) as exc:
        raise PretrainedError(f"the backbone config cannot be built to check its pretrained weights: {exc}") from None
    try:
        weights, report = extract_backbone(path, model)
    except CheckpointError as exc:
        raise PretrainedError(f"{what} {path}: {exc}") from None
    target = model.state_dict()
    unexpected = [k for k in weights if k not in target]
    mismatched = [f"{k} {tuple(weights[k].shape)} vs {tuple(target[k].shape)}" for k in weights
                  if k in target and tuple(weights[k].shape) != tuple(target[k].shape)]
    missing = [k for k in target if k not in weights]
    new_norms = [k for k in missing if _OUTPUT_NORM.match(k)] if report.source != "detector/segmentor" else []
    missing = [k for k in missing if k not in new_norms]
    if missing or unexpected or mismatched:
        parts = []
        for problem, keys in (("missing", missing), ("unexpected", unexpected), ("with another shape", mismatched)):
            if keys:
                parts.append(f"{len(keys)} {problem} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")
        arch = f"embed_dims={kwargs.get('embed_dims')}, depths={list(kwargs.get('depths') or [])}"
        raise PretrainedError(f"{what} {path} do not fit the recipe's backbone ({arch}): "
                              f"{'; '.join(parts)} keys; is it a checkpoint of another Swin size?")
    summary = f"{len(weights)} tensors ({report.layout} layout, {report.source}) load with no missing or " \
              "unexpected keys" + (f"; the {len(new_norms) // 2} output norms start fresh (ImageNet weights have "
                                   "none)" if new_norms else "")
    _remember(key, summary)
    return summary


def backbone_of(cfg) -> dict:
    model = cfg.get("model") or {}
    backbone = model.get("backbone") if isinstance(model, dict) or hasattr(model, "get") else None
    return backbone.to_dict() if hasattr(backbone, "to_dict") else dict(backbone or {})


def pretrained_ref(backbone: dict) -> str | None:
    init = backbone.get("init_cfg")
    if isinstance(init, dict) and init.get("type") == "Pretrained" and isinstance(init.get("checkpoint"), str):
        return init["checkpoint"]
    value = backbone.get("pretrained")
    return value if isinstance(value, str) else None


def check_backbone(cfg, published: Any = None, fetch: bool = True) -> list[Deviation]:
    """The pretrained weights of the rendered config's backbone: verified (a note), not verified offline or by a
    dry run (`fetch=False`: a note), or a PretrainedError. No pretrained weights: nothing to check (the setting
    comparison names it)."""
    backbone = backbone_of(cfg)
    ref = pretrained_ref(backbone)
    if not ref:
        return []
    path, origin = resolve(ref, fetch=fetch)
    if path is None:
        return [Deviation("pretrained", f"pretrained weights not verified: {origin}: {ref}", NOTE, None, ref)]
    summary = load_check(path, backbone)
    return [Deviation("pretrained", f"pretrained weights verified: {summary} ({origin})", NOTE, None, ref)]

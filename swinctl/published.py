"""The weights a test run evaluates: a recipe's released checkpoint (`published_weights:`, the metafile's
`Weights`) for `swinctl test --published`, or a `--checkpoint` file, made loadable by swinctl's model.

Everything here runs on the submit host before anything is written or queued (compute nodes may have no network):

* A URL is downloaded once into the torch hub cache, where ``torch.hub.load_state_dict_from_url`` and MMEngine's URL
  loader keep it (``torch.hub.get_dir()/checkpoints/<file name>``; ``$TORCH_HOME`` honoured), under a temporary name
  that is renamed only once the file reads weights-only as a detector/segmentor checkpoint. ``SWINCTL_OFFLINE=1``
  uses the cache only.
* The file's Swin is checked against the recipe's backbone (sizes and every key, :func:`swinctl.guard.pretrained.
  load_check`): a Swin-B file for a Swin-T recipe is an error here, not a silently wrong number later.
* Released MMDet/MMSeg checkpoints name their Swin the MMDet way (``backbone.stages...``) while swinctl's Swin has
  the official names, and MMEngine loads test weights non-strictly (a mismatch is a warning and the test scores an
  untrained backbone). So a file in another layout is converted once, into ``<name>.swinctl.pth`` beside the cached
  download (or ``$SWINCTL_CACHE/converted/`` for a file of the user's), and the job loads that plain checkpoint:
  no conversion code in the job, and the file the job reads is the file that was checked.

What a test run evaluated is written to its run dir as ``weights.json`` (:func:`write_record`), which `report`
reads (:func:`read_record`) to word a published-weights verdict. Only the standard library is imported at module
level: torch and the converters load when a checkpoint is read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from swinctl.errors import UserError

RECORD_FILE = "weights.json"
_URL = re.compile(r"[a-z][a-z0-9+.-]*://")


class WeightsError(UserError):
    """The weights to test cannot be had, read, or do not fit the recipe's model; the message says how to fix it."""


@dataclass(frozen=True)
class TestWeights:
    """The file a test job loads and where it came from."""

    path: Path  # what the job loads (swinctl layout)
    source: Path  # the downloaded, cached or given file
    layout: str  # the source's Swin layout: official (swinctl's), mmdet or timm
    published: str | None = None  # the recipe's published_weights (URL or path) when testing those
    origin: str = "given"  # downloaded | cached | local | given
    tta: bool = False  # evaluated with the config's test-time augmentation (multi-scale + flip)

    @property
    def converted(self) -> bool:
        return self.path != self.source

    def describe(self) -> str:
        """One line for the terminal: what is tested and from where."""
        what = f"published weights {self.published}" if self.published else f"checkpoint {self.source}"
        where = {"downloaded": f"downloaded to {self.source}", "cached": f"cached at {self.source}",
                 "local": f"local file {self.source}", "given": ""}[self.origin]
        conversion = f"{self.layout} layout converted once to {self.path}" if self.converted else ""
        details = "; ".join(part for part in (where, conversion) if part)
        return what + (f" ({details})" if details else "")

    def to_record(self) -> dict:
        record = asdict(self)
        record.update(path=str(self.path), source=str(self.source))
        return record


def is_url(ref: str) -> bool:
    return bool(_URL.match(ref))


def planned_path(ref: str) -> Path:
    """Where the file of `ref` is (or will be, once downloaded), without touching the network."""
    from swinctl.guard.pretrained import hub_path

    return hub_path(ref) if is_url(ref) else Path(ref).expanduser().absolute()


FIX = "make the recipe's published_weights the model's released .pth (or --set published_weights=URL|PATH)"


def _check_model_file(path: Path, what: str, fix: str | None = None, shown: str | None = None) -> str:
    """`path` reads weights-only as a detector/segmentor checkpoint; its Swin layout. Otherwise one WeightsError:
    `what`, the problem (after `shown` in place of the path, when given) and `fix`."""
    from swinctl.models.checkpoints import CheckpointError, check_checkpoint, detect_layout, read_checkpoint

    try:
        check_checkpoint(path, "model")
        return detect_layout(read_checkpoint(path))
    except CheckpointError as exc:
        problem = str(exc)
        if shown is not None:
            problem = f"{shown}: {problem.removeprefix(f'{path}: ')}"
        raise WeightsError(f"{what}: {problem}" + (f"; {fix}" if fix else "")) from None


def fetch_published(ref: str) -> tuple[Path, str, str]:
    """(the local file of the recipe's published weights `ref`, its layout, downloaded|cached|local): downloaded into
    the torch hub cache once, and only kept there when it reads as a checkpoint."""
    from swinctl.guard import pretrained

    what = f"published weights {ref}"
    if not is_url(ref):
        path = Path(ref).expanduser().absolute()
        return path, _check_model_file(path, what, FIX), "local"
    if ref.split("://", 1)[0].lower() not in ("http", "https"):
        raise WeightsError(f"{what}: only http(s) URLs and local files can be fetched; {FIX}")
    dest = pretrained.hub_path(ref)
    if dest.is_file():
        layout = _check_model_file(dest, what, f"delete it to download it again, or {FIX}",
                                   shown=f"the cached copy {dest}")
        return dest, layout, "cached"
    if pretrained.offline():
        raise WeightsError(f"{what} are not in the torch hub cache ({dest}) and SWINCTL_OFFLINE is set: put the "
                           "file there, or unset SWINCTL_OFFLINE")
    layouts: list[str] = []

    def check(partial: Path) -> None:
        layouts.append(_check_model_file(partial, what, FIX, shown="the downloaded file (not kept)"))

    try:
        pretrained.download(ref, dest, what="published weights",
                            fix=f"check the URL and the network, or put the file at {{dest}} yourself; {FIX}",
                            check=check)
    except pretrained.PretrainedError as exc:
        raise WeightsError(str(exc)) from None
    return dest, layouts[0], "downloaded"


def _converted_path(source: Path) -> Path:
    """Where the swinctl-layout copy of `source` goes: beside a torch hub download, else in swinctl's cache."""
    from swinctl.guard.pretrained import cache_dir, hub_checkpoints

    name = f"{source.name.removesuffix(source.suffix)}.swinctl.pth"
    if source.parent == hub_checkpoints() and os.access(source.parent, os.W_OK):
        return source.with_name(name)
    key = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:10]
    return cache_dir() / "converted" / f"{key}-{name}"


def to_swinctl_layout(source: Path, layout: str) -> Path:
    """`source` itself when its Swin has swinctl's (official) names, else its swinctl-layout copy, converted once
    (again when `source` is newer than the copy)."""
    if layout == "official":
        return source
    from swinctl.models.checkpoints import CheckpointError, convert_checkpoint_file

    target = _converted_path(source)
    if target.is_file() and target.stat().st_mtime_ns >= source.stat().st_mtime_ns:
        return target
    try:
        convert_checkpoint_file(source, target, to="swinctl", shape="model")
    except (CheckpointError, OSError) as exc:
        raise WeightsError(f"{source}: cannot write its swinctl-layout copy {target} ({exc}); set SWINCTL_CACHE to "
                           "a writable directory") from None
    return target


def resolve(*, checkpoint: Path | None, published: str | None, backbone: dict, tta: bool = False) -> TestWeights:
    """The weights a test job loads, checked against the rendered config's `backbone` (sizes and keys), in
    swinctl's layout. Exactly one of `checkpoint` and `published` (the recipe's published_weights)."""
    from swinctl.guard.pretrained import PretrainedError, load_check

    if published is not None:
        source, layout, origin = fetch_published(published)
        what, named = "published weights", f"{published}: "
    else:
        assert checkpoint is not None
        source = Path(checkpoint).expanduser().absolute()
        layout, origin = _check_model_file(source, "--checkpoint"), "given"
        what, named = "--checkpoint", ""
    try:
        load_check(source, backbone, what=what)
    except PretrainedError as exc:
        raise WeightsError(f"{named}{exc}") from None
    return TestWeights(path=to_swinctl_layout(source, layout), source=source, layout=layout, published=published,
                       origin=origin, tta=tta)


# ---------------------------------------------------------------------------------------------- the run's record


def write_record(run_dir: Path, weights: TestWeights) -> Path:
    """The run dir's weights.json, written whole or not at all."""
    from swinctl.job.checkpoints import write_atomic

    target = run_dir / RECORD_FILE
    write_atomic(target, (json.dumps(weights.to_record(), indent=2) + "\n").encode())
    return target


def read_record(run_dir: Path | str | None) -> dict | None:
    """A test run's weights.json (None for a train run, or a test run made before it existed)."""
    if run_dir is None:
        return None
    try:
        data = json.loads((Path(run_dir) / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None

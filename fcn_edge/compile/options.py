"""What a build is asked for (options, accuracy budget) and where it runs (backend).

Both check themselves when made, once, with messages that name the ``fcn-edge build`` flag each field
comes from: the command, the library and the TensorRT builder behind them do not check again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..capabilities import PRECISIONS
from ..errors import FcnEdgeError
from ..paths import ENGINES_DIR
from ..quantize import calibration

MAX_BATCH = 64  # --batch-sizes: more frames than cameras one box streams


@dataclass(frozen=True)
class Budget:
    max_miou_drop: float = 1.0  # mIoU points (x100) below FP32, where ground truth exists
    min_agreement: float = 98.0  # percent of pixels with the FP32 label

    def __post_init__(self) -> None:
        if self.max_miou_drop < 0:
            raise FcnEdgeError(f"--max-miou-drop {self.max_miou_drop:g} must be 0 or more (points of mIoU)")
        if not 0 <= self.min_agreement <= 100:
            raise FcnEdgeError(f"--min-agreement {self.min_agreement:g} must be a percentage, 0 to 100")

    def problems(self, figures) -> list[str]:
        """What ``figures`` (a verify.Figures) break, as phrases; empty when within budget."""
        found = []
        if figures.miou_drop is not None and figures.miou_drop > self.max_miou_drop:
            found.append(f"mIoU drop {figures.miou_drop:.2f} > {self.max_miou_drop:g} points")
        if figures.agreement is not None and 100 * figures.agreement < self.min_agreement:
            found.append(f"label agreement {100 * figures.agreement:.2f}% < {self.min_agreement:g}%")
        return found


@dataclass
class BuildOptions:
    precision: str | None = None  # int8 | fp16 | fp32; None: the fastest that meets the budget
    calib_dir: Path = calibration.DEFAULT_DIR
    calib_method: str = "percentile"  # docs/compile.md: plain INT8 of MediaPipe's selfie model 97.11% vs entropy 94.67%
    calib_size: tuple[int, int] = calibration.DEFAULT_SIZE
    engines_dir: Path = ENGINES_DIR
    budget: Budget = field(default_factory=Budget)
    allow_accuracy_drop: bool = False
    force: bool = False
    min_shape: tuple[int, ...] | None = None
    opt_shape: tuple[int, ...] | None = None
    max_shape: tuple[int, ...] | None = None
    workspace_mb: int | None = None
    opt_level: int | None = None
    dla_core: int | None = None
    timing_cache: Path | None = None
    verify_scenes: int = 32
    verify_size: tuple[int, int] = (256, 512)  # (H, W)
    latency_size: tuple[int, int] = (512, 1024)
    progress: bool = True
    calib_data: str | None = None  # "voc:ROOT" etc.: calibration frames from a dataset's train split (.images)
    calib_images: int = 64  # frames sampled from calib_data
    val_data: str | None = None  # "voc:ROOT", "synthetic", ...; None: chosen by .images' rules
    val_split: str = "val"
    val_images: int = 50  # at most this many images of val_data, evenly spaced; 0: all
    val_fraction: float | None = None  # a flat folder's split (fcn_edge.data.splits), for calib_data and val_data
    split_seed: int = 0
    search_minutes: float = 5.0  # time budget of the mixed-precision search (.mixed)
    batch_sizes: tuple[int, ...] = (1,)  # batch sizes verified and timed (.batches); always with 1, sorted

    def __post_init__(self) -> None:
        """Out-of-range values stop here, before any file is read or written."""
        checks = [
            (self.precision is not None and self.precision not in PRECISIONS,
             f"precision {self.precision!r} is unknown: choose one of {', '.join(PRECISIONS)}"),
            (self.verify_scenes < 0, f"--verify-scenes {self.verify_scenes} must be 0 or more"),
            (self.calib_images < 2, f"--calib-images {self.calib_images} must be at least 2"),
            (self.val_images < 0, f"--val-images {self.val_images} must be 0 (all) or more"),
            (self.search_minutes < 0, f"--search-minutes {self.search_minutes:g} must be 0 or more"),
            (self.workspace_mb is not None and self.workspace_mb < 1, f"--workspace {self.workspace_mb} must be at least 1 (MB)"),
            (self.opt_level is not None and not 0 <= self.opt_level <= 5,
             f"--opt-level {self.opt_level} must be 0 to 5 (TensorRT's default is 3)"),
            (self.dla_core is not None and self.dla_core < 0, f"--dla-core {self.dla_core} must be 0 or more"),
            (any(not 1 <= size <= MAX_BATCH for size in self.batch_sizes),
             f"--batch-sizes {' '.join(map(str, self.batch_sizes))}: each must be 1 to {MAX_BATCH}"),
        ]  # fmt: skip
        for failed, message in checks:
            if failed:
                raise FcnEdgeError(message)
        self._check_profile()
        self.batch_sizes = tuple(sorted({1, *self.batch_sizes}))

    def _check_profile(self) -> None:
        given = [s for s in (self.min_shape, self.opt_shape, self.max_shape) if s is not None]
        if given and len(given) != 3:
            raise FcnEdgeError("--min-shape, --opt-shape and --max-shape go together: give all three or none")
        if given and not all(a <= b <= c for a, b, c in zip(self.min_shape, self.opt_shape, self.max_shape)):
            raise FcnEdgeError(
                f"--max-shape {'x'.join(map(str, self.max_shape))} >= --opt-shape {'x'.join(map(str, self.opt_shape))} >= "
                f"--min-shape {'x'.join(map(str, self.min_shape))} must hold in every dimension: fix the shapes"
            )

    def recorded(self) -> dict[str, Any]:
        """The options that change the artifact (the sidecar's ``options``, part of its key)."""
        skip = {"force", "progress", "engines_dir", "allow_accuracy_drop", "precision"}
        values = {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}
        values["calib_dir"] = str(self.calib_dir)
        values["timing_cache"] = str(self.timing_cache) if self.timing_cache else None
        if self.val_fraction is None:  # keys of builds without a split stay as they were
            del values["val_fraction"], values["split_seed"]
        if self.batch_sizes == (1,):  # and those verified at batch 1 only
            del values["batch_sizes"]
        return values


@dataclass
class Backend:
    name: str  # "tensorrt" | "onnxruntime" | "openvino"
    why: str
    record: dict[str, Any]  # what sidecars record of it: name, version, device; GPU name and compute capability
    # CPU runtimes each precision is verified and timed on; the fastest runs the artifact (its sidecar says which)
    cpu_backends: tuple[str, ...] = ("onnxruntime",)

"""Photo -> face: decode, cut the face (a box or a central square), resize, normalise.

Used by every source at prepare time and by ``load_image_for_inference`` for a user's photo, so that both see
faces cut the same way.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    import torch

from facegraph.errors import ConfigError, DataError

RESAMPLING = Image.Resampling.BICUBIC
# What counts as a photo in a folder (by extension): the formats Pillow reads that photos come in.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".pbm", ".bmp", ".webp", ".tif", ".tiff",
                              ".gif"})


class UnusableImage(DataError):
    """An image prepare skips and counts under ``reason`` (e.g. ``truncated_image``, ``box_outside_photo``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FaceCrop:
    """Where the face is in a photo.

    Without ``box``: the central square whose side is ``center_fraction`` of the photo's shorter side.
    With ``box`` (``x1 y1 x2 y2``): that rectangle, in the coordinates of the photo resized to ``box_frame``
    (``height, width``; None: the photo's own size). The cut is resized to a square, as the paper does.
    """

    center_fraction: float = 1.0
    box: tuple[float, float, float, float] | None = None
    box_frame: tuple[int, int] | None = None


def open_image(source: Path | bytes, name: str) -> Image.Image:
    """Open (lazily: header only) an image file or bytes; UnusableImage naming ``name`` if it is not one."""
    try:
        return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except FileNotFoundError:
        raise UnusableImage("missing_file", f"{name}: file not found") from None
    except UnidentifiedImageError:
        raise UnusableImage("not_an_image", f"{name}: not an image (unrecognised format)") from None
    except (OSError, Image.DecompressionBombError) as error:
        raise UnusableImage("unreadable_image", f"{name}: cannot be read ({error})") from None


def face_region(crop: FaceCrop, width: int, height: int, name: str) -> tuple[float, float, float, float]:
    """The face rectangle in pixel coordinates of a ``width`` x ``height`` photo."""
    if crop.box is None:
        side = crop.center_fraction * min(width, height)
        return ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
    x1, y1, x2, y2 = crop.box
    frame_height, frame_width = crop.box_frame or (height, width)
    if not (0 <= x1 < x2 <= frame_width and 0 <= y1 < y2 <= frame_height):
        raise UnusableImage(
            "box_outside_photo",
            f"{name}: face box {x1:g} {y1:g} {x2:g} {y2:g} is not inside the {frame_width:g} x {frame_height:g} photo",
        )
    # Resize first, then crop: scale the box from the declared frame to the photo's actual size.
    scale_x, scale_y = width / frame_width, height / frame_height
    return (x1 * scale_x, y1 * scale_y, x2 * scale_x, y2 * scale_y)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I"):
        # 16/32-bit greyscale (PGM with a large maxval, 16-bit PNG): rescale to 8 bits before converting.
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if values.max() > 255 else 255.0
        image = Image.fromarray(np.clip(values * (255.0 / peak), 0, 255).astype(np.uint8), mode="L")
    return image if image.mode == "RGB" else image.convert("RGB")


# A decoding of one photo, keyed by the size the decoder yields (a JPEG's draft scale) and the EXIF orientation.
Decodings = dict[tuple[tuple[int, int], int], Image.Image]


def cut_face(image: Image.Image, crop: FaceCrop, size: int, name: str, *, upright: bool = False,
             decoded: Decodings | None = None) -> np.ndarray:
    """Decode ``image`` and return its face as a ``size`` x ``size`` x 3 uint8 array.

    ``upright`` applies the EXIF orientation first (phone photos); face boxes of datasets refer to raw pixels.
    ``decoded``: one photo's decodings so far (an empty dict at its first cut), for several cuts of that photo, each
    opened anew: a cut that decodes at a scale an earlier cut did reuses that decoding and gives what it would alone.
    Never share the dict between photos: the key does not name the photo.
    """
    width, height = image.size
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1) if upright else 1
    if orientation == 1:
        region = face_region(crop, width, height, name)
        if image.format == "JPEG":
            # Let libjpeg decode at 1/2..1/8 scale as long as the face keeps at least `size` pixels: much faster.
            shrink = size / max(1.0, min(region[2] - region[0], region[3] - region[1]))
            drafted = image.draft(None, (max(1, math.ceil(width * shrink)), max(1, math.ceil(height * shrink))))
            if drafted is not None:
                ratio = drafted[1][2] / width
                region = tuple(value * ratio for value in region)
    decoding_key = (image.size, orientation)  # after the draft: the size decoding yields
    if decoded is not None and decoding_key in decoded:
        image = decoded[decoding_key]
    else:
        try:
            image.load()
            if orientation != 1:
                image = ImageOps.exif_transpose(image)
        except (OSError, SyntaxError, ValueError) as error:
            reason = "truncated_image" if "truncated" in str(error) else "unreadable_image"
            raise UnusableImage(reason, f"{name}: cannot be decoded ({error})") from None
        image = _to_rgb(image)
        if decoded is not None:
            decoded[decoding_key] = image
    if orientation != 1:
        region = face_region(crop, image.width, image.height, name)
    face = image.resize((size, size), RESAMPLING, box=region)
    return np.array(face, dtype=np.uint8)  # a writable copy


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 images (..., 3, H, W) -> float32 ``(x / 255 - mean) / std`` per channel."""
    import torch  # here, so that the CLI parses arguments without loading torch

    std_tensor = torch.tensor(std, dtype=torch.float64).view(3, 1, 1)
    scale = (1.0 / (255.0 * std_tensor)).to(torch.float32)
    shift = (-torch.tensor(mean, dtype=torch.float64).view(3, 1, 1) / std_tensor).to(torch.float32)
    return images.to(torch.float32).mul_(scale).add_(shift)


PREPROCESSING_KEYS = ("image_size", "center_crop", "mean", "std")


@dataclass(frozen=True)
class InferenceParams:
    """How a dataset's images were cut and normalised, to treat a user's photo the same way."""

    image_size: int
    center_crop: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def inference_params(preprocessing: Mapping[str, Any]) -> InferenceParams:
    """Read the one preprocessing shape: ``{image_size, center_crop, mean, std}`` (other keys are ignored).

    That is what ``PreparedDataset.preprocessing()`` returns and what a training run stores in its
    ``dataset.json``; pass either. ``image_size`` in pixels, ``center_crop`` a fraction in (0, 1], ``mean`` and
    ``std`` three per-channel values in [0, 1] pixel units (``std`` > 0).
    """
    if not isinstance(preprocessing, Mapping):
        raise DataError(
            f"expected a preprocessing mapping with keys {', '.join(PREPROCESSING_KEYS)} "
            f"(e.g. PreparedDataset.preprocessing() or a run's dataset.json), got {type(preprocessing).__name__}"
        )
    missing = [key for key in PREPROCESSING_KEYS if key not in preprocessing]
    if missing:
        raise DataError(f"preprocessing parameters lack {', '.join(missing)} (expected keys {', '.join(PREPROCESSING_KEYS)})")
    try:
        params = InferenceParams(
            int(preprocessing["image_size"]),
            float(preprocessing["center_crop"]),
            tuple(float(v) for v in preprocessing["mean"]),
            tuple(float(v) for v in preprocessing["std"]),
        )
    except (TypeError, ValueError) as error:
        raise DataError(f"preprocessing parameters mistyped ({error}); expected image_size int, center_crop float, mean/std 3 floats") from None
    if params.image_size < 1 or not 0 < params.center_crop <= 1 or len(params.mean) != 3 or len(params.std) != 3 or min(params.std) <= 0:
        raise DataError(f"preprocessing parameters out of range: {params}")
    return params


def load_image_for_inference(path: str | Path, preprocessing: Mapping[str, Any]) -> torch.Tensor:
    """A user's photo cut, resized and normalised as the dataset was prepared: float32 (3, H, W).

    ``preprocessing``: ``{image_size, center_crop, mean, std}`` (see ``inference_params``).
    """
    params = inference_params(preprocessing)
    return load_faces_for_inference(path, preprocessing, [params.center_crop])[0]


def load_faces_for_inference(path: str | Path, preprocessing: Mapping[str, Any],
                             center_crops: Sequence[float]) -> list[torch.Tensor]:
    """``load_image_for_inference`` at each of ``center_crops`` (replacing ``preprocessing``'s crop): float32
    (3, H, W) per crop, each equal to its crop alone. With several crops the file is read once and decoded once per
    JPEG scale the crops need."""
    params = inference_params(preprocessing)
    if not center_crops or any(not 0 < crop <= 1 for crop in center_crops):
        # ConfigError, not DataError: the request is wrong, not this image (a caller skipping bad images goes on).
        raise ConfigError(f"centre crops must be fractions in (0, 1], at least one; got {list(center_crops)}")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such image file")
    source: Path | bytes = path
    if len(center_crops) > 1:
        try:
            source = path.read_bytes()
        except FileNotFoundError:
            raise UnusableImage("missing_file", f"{path}: file not found") from None
        except OSError as error:
            raise UnusableImage("unreadable_image", f"{path}: cannot be read ({error})") from None
    decoded: Decodings = {}
    return [face_for_inference(open_image(source, str(path)), replace(params, center_crop=center_crop), str(path),
                               decoded=decoded)
            for center_crop in center_crops]


def face_for_inference(image: Image.Image, params: InferenceParams, name: str, *,
                       decoded: Decodings | None = None) -> torch.Tensor:
    """The face of ``image`` (decoded here; upright by its EXIF orientation) cut, resized and normalised as
    ``params`` say: float32 (3, S, S). ``name`` names the photo in errors; ``decoded`` as for ``cut_face``."""
    import torch

    face = cut_face(image, FaceCrop(center_fraction=params.center_crop), params.image_size, name, upright=True,
                    decoded=decoded)
    return normalize(torch.from_numpy(face).permute(2, 0, 1), params.mean, params.std).contiguous()

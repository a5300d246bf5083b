"""Decode any photo a user may have into 8-bit RGB, or say exactly why not.

Photos arrive as grayscale, CMYK, palette, with alpha, 16-bit, rotated by an EXIF tag, or
broken, in every format a phone or camera writes: JPEG, HEIC/HEIF (an iPhone's default,
through pillow-heif), AVIF, PNG, WebP, TIFF (first page), GIF (first frame), BMP. Camera RAW
and other formats that cannot be read are still listed, so that they are reported with the
reason instead of silently left out. Everything downstream wants an upright HxWx3 uint8
array, so the conversion lives here once.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import warnings
from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

try:  # HEIC/HEIF (a pinned dependency; Pillow reads AVIF itself). Without it, e.g. on a
    import pillow_heif  # machine with its own Python, HEIC photos are skipped as unreadable

    pillow_heif.register_heif_opener()
except ImportError:
    pass

IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".png",
        ".bmp",
        ".pgm",
        ".ppm",
        ".webp",
        ".heic",
        ".heif",
        ".hif",
        ".avif",
        ".tif",
        ".tiff",
        ".gif",
    }  # fmt: skip
)
# Camera RAW: developed by LibRaw (`load_raw`), where a camera keeps no JPEG of its own
RAW_EXTENSIONS = frozenset(
    {".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".orf", ".rw2",
     ".raf", ".pef", ".srw", ".x3f", ".3fr", ".iiq", ".erf", ".kdc", ".mrw", ".mef", ".rwl"}
)  # fmt: skip
# Photo formats that are listed but not read: each is reported with this reason.
UNSUPPORTED = {
    ".jxl": "JPEG XL is not read: convert it to JPEG or PNG",
    ".psd": "Photoshop files are not read: export a JPEG or PNG",
    ".svg": "vector drawings are not photos",
}
DEFAULT_MAX_PIXELS = 100_000_000  # 100 MP: above any camera, below a decompression bomb

# We apply our own pixel limit before decoding; PIL's warning/error would only duplicate it.
# So every image facetrain opens goes through `open_checked` (a 30,000² PNG once decoded to
# 4.2 GB while its EXIF date was read by a plain Image.open).
Image.MAX_IMAGE_PIXELS = None
# PIL's notes on files it opens anyway (an MPO it reads as a plain JPEG, ...) are noise
# beside facetrain's own report of each file: filtered here once, for PIL's modules only.
# (A `catch_warnings` around each open, run by several reading threads at once, left the
# whole process's warnings switched off: it is not thread-safe.)
warnings.filterwarnings("ignore", module=r"PIL\.")


class ImageError(Exception):
    """An image that cannot be used. `status` is a short machine-readable word."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def is_utf8_name(path: str) -> bool:
    """A path every file facetrain writes can hold: no byte of a name that is not UTF-8
    (os functions hand those over as lone surrogates)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_image_name(name: str) -> bool:
    """A photo by its name: one facetrain reads, or one it lists as unsupported."""
    ext = os.path.splitext(name)[1].lower()
    return ext in IMAGE_EXTENSIONS or ext in RAW_EXTENSIONS or ext in UNSUPPORTED


def is_raw_name(name: str) -> bool:
    """A camera RAW file, by its name."""
    return os.path.splitext(name)[1].lower() in RAW_EXTENSIONS


def paired_raws(names: Iterable[str]) -> set[str]:
    """The camera RAWs among one folder's file names that a picture of the same name stands
    beside (IMG_0001.CR2 and IMG_0001.JPG: a camera set to RAW + JPEG). Each is that photo
    once more, so it is left to the picture: read twice, one face would count twice."""
    names = list(names)
    developed = {os.path.splitext(n)[0].casefold() for n in names
                 if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS}  # fmt: skip
    return {n for n in names if is_raw_name(n) and os.path.splitext(n)[0].casefold() in developed}


_FORMAT_EXT = {"JPEG": "jpg", "PNG": "png", "BMP": "bmp", "WEBP": "webp", "PPM": "pgm"}


def encoded_ext(raw: bytes) -> str:
    """The file extension of an encoded image (MS-Celeb's base64, a RecordIO record),
    after a check that it decodes; ValueError with the reason when it does not."""
    if not raw:
        raise ValueError("empty image")
    try:
        with Image.open(io.BytesIO(raw)) as img:
            fmt = img.format
            img.verify()
    except Exception as e:  # PIL raises many types for corrupt data
        raise ValueError(f"not a decodable image ({type(e).__name__})") from None
    return _FORMAT_EXT.get(fmt or "", "jpg")


def open_checked(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open (not decode) an image, refusing empty files, unsupported formats and oversize
    dimensions."""
    why = UNSUPPORTED.get(os.path.splitext(str(path))[1].lower())
    if why is not None:
        raise ImageError("unsupported", why)
    try:
        if os.path.getsize(path) == 0:
            raise ImageError("unreadable", "empty file (0 bytes)")
        img = Image.open(path)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("unreadable", "not an image PIL can identify") from None
    except IsADirectoryError:
        raise ImageError("unreadable", "a folder, not an image file") from None
    except OSError as e:
        raise ImageError("unreadable", f"cannot open: {e}") from None
    return _within(img, max_pixels)


def _within(img: Image.Image, max_pixels: int) -> Image.Image:
    """An opened image whose size is under the limit (checked before decoding: a file of a
    few kB can claim gigapixels), else closed and refused."""
    w, h = img.size
    if w * h > max_pixels:
        img.close()
        raise ImageError("too_large", f"{w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}")
    return img


def embedded_xmp(path: str | os.PathLike) -> bytes | None:
    """The XMP packet a photo carries inside its file (JPEG's APP1, WebP's and HEIC's XMP,
    PNG's iTXt, TIFF's tag 700), read without decoding a pixel; None when it has none.
    ImageError for a file that cannot be opened as an image."""
    with open_checked(path) as img:
        data = img.info.get("xmp") or img.info.get("XML:com.adobe.xmp")
        if data is None and hasattr(img, "tag_v2"):
            data = img.tag_v2.get(700)
    return data.encode() if isinstance(data, str) else (bytes(data) if data else None)


def to_rgb8(img: Image.Image) -> np.ndarray:
    """Convert any PIL mode to an HxWx3 uint8 array (alpha composited on white)."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        a = np.clip(np.rint(a * (255.0 / hi)), 0, 255).astype(np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2)
    if mode == "F":  # 32-bit float, in [0, 1] or in [0, 255]; NaN black, ±inf an end
        a = np.asarray(img, dtype=np.float64)
        scale = 255.0 if a.max(initial=0, where=np.isfinite(a)) <= 1.0 else 1.0
        a = np.nan_to_num(a * scale, nan=0.0, posinf=255.0, neginf=0.0)
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2)
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.array(img, dtype=np.uint8)  # a writable copy (torch.from_numpy wants one)


def load_rgb(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an upright 8-bit RGB array (EXIF orientation applied) or raise ImageError."""
    if is_raw_name(os.fspath(path)):
        return load_raw(path, max_pixels)
    return _decoded(open_checked(path, max_pixels))


def load_rgb_smaller(path: str | os.PathLike, least: float,
                     max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, float]:  # fmt: skip
    """`load_rgb`, a JPEG decoded smaller where a picture is shown smaller (its DCT's own
    1/2, 1/4 or 1/8: a thumbnail from a 12-megapixel photo several times quicker), never
    below `least` of its size; and the scale it was decoded at (1.0: full size)."""
    if is_raw_name(os.fspath(path)) or least >= 1.0:
        return load_rgb(path, max_pixels), 1.0
    img = open_checked(path, max_pixels)
    w, h = img.size
    if img.format == "JPEG":
        with contextlib.suppress(OSError, ValueError):  # decoded at full size, as it is
            img.draft(img.mode, (math.ceil(w * least), math.ceil(h * least)))
    scale = img.size[0] / w
    return _decoded(img), scale


def read_rgb(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """An image file's bytes (an upload, a download, a database's blob) read as `load_rgb`
    reads the file, or ImageError."""
    if not data:
        raise ImageError("unreadable", "empty (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError("unreadable", "not an image PIL can identify") from None
    except OSError as e:
        raise ImageError("unreadable", f"cannot open: {e}") from None
    return _decoded(_within(img, max_pixels))


def _decoded(img: Image.Image) -> np.ndarray:
    """An opened image decoded upright (EXIF orientation applied) to 8-bit RGB, and closed."""
    try:
        with img:
            img.load()
            img = ImageOps.exif_transpose(img)
            arr = to_rgb8(img)
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError("unreadable", f"cannot decode: {e}") from None
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError("unreadable", f"unexpected decoded shape {arr.shape}")
    return np.ascontiguousarray(arr)


def load_raw(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A camera RAW developed by LibRaw at half its sensor's size (each 2x2 of the sensor one
    pixel: 24 MP give 6 MP, every face a photo of people holds, in a fraction of a full
    development's time), in the camera's white balance, turned as the camera said."""
    try:
        import rawpy
    except ImportError:  # the GPU machine's own Python, say
        raise ImageError("unsupported", "camera RAW needs rawpy (pip install rawpy)") from None
    if os.path.getsize(path) == 0:
        raise ImageError("unreadable", "empty file (0 bytes)")
    try:
        with rawpy.imread(os.fspath(path)) as raw:
            w, h = raw.sizes.width // 2, raw.sizes.height // 2
            if w * h > max_pixels:
                raise ImageError("too_large", f"{w}x{h} = {w * h} pixels developed exceeds "
                                 f"the limit of {max_pixels}")  # fmt: skip
            rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
    except ImageError:
        raise
    except (rawpy.LibRawError, rawpy.NotSupportedError, OSError, ValueError) as e:
        said = e.args[0] if e.args else ""
        why = (said.decode(errors="replace") if isinstance(said, bytes) else str(e)) or type(
            e).__name__  # fmt: skip
        raise ImageError("unreadable", f"cannot develop this RAW: {why}") from None
    if rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        raise ImageError("unreadable", f"unexpected developed shape {rgb.shape}")
    return np.ascontiguousarray(rgb)


def raw_date(path: str | os.PathLike) -> str | None:
    """A TIFF-based RAW's (DNG, CR2, NEF, ARW, PEF, ...) EXIF DateTimeOriginal, else its
    DateTime, as written: read from its first directory and the EXIF one that points to,
    no pixel decoded. None for a RAW of another build (CR3, RAF) or one without."""
    from PIL import TiffImagePlugin

    try:
        with open(path, "rb") as f:  # PIL's warning of each damaged directory: filtered
            head = f.read(8)
            if head[:4] not in (b"II*\x00", b"MM\x00*"):
                return None
            first = TiffImagePlugin.ImageFileDirectory_v2(head)
            f.seek(first.next)
            first.load(f)
            exif = TiffImagePlugin.ImageFileDirectory_v2(head)
            if first.get(0x8769):
                f.seek(first[0x8769])
                exif.load(f)
    except Exception:  # a date is a bonus: a damaged file has none
        return None
    return exif.get(36867) or first.get(306)


def exif_orientation(path: str | os.PathLike) -> int:
    """The EXIF orientation (1–8) that `load_rgb` applies to a photo; 1 when it has none or
    the file cannot be read, and for a RAW (its development turns it)."""
    if not os.path.isfile(path) or is_raw_name(os.fspath(path)):  # gone, a FIFO, a RAW
        return 1
    try:
        with open_checked(path) as im:
            value = im.getexif().get(0x0112, 1)
    except Exception:  # what cannot be read is taken as it is stored
        return 1
    return value if value in range(1, 9) else 1


def text_tile(size: int, text: str) -> bytes:
    """A grey square JPEG saying `text` (centred; lines split at newlines): a picture's
    stand-in where the picture cannot be had."""
    from PIL import ImageDraw

    im = Image.new("RGB", (size, size), (200, 200, 200))
    ImageDraw.Draw(im).text((size / 2, size / 2), text, fill=(90, 90, 90), anchor="mm",
                            align="center", font_size=max(8, size // 9))  # fmt: skip
    return to_jpeg(np.asarray(im), size, quality=80)


def to_jpeg(img: np.ndarray, max_side: int, quality: int = 85) -> bytes:
    """An RGB array as JPEG bytes, shrunk to fit max_side (a thumbnail)."""
    import io

    im = Image.fromarray(img)
    im.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()

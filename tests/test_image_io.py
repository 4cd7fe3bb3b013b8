"""One real-world image file -> square RGB array: formats, modes, orientation, crops, failures."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from preprocessing import image_io
from preprocessing.image_io import BadImage, load_rgb, square_box


def smooth_image(height: int, width: int) -> np.ndarray:
    """A smooth colour gradient (JPEG keeps it nearly exactly, so comparisons can be tight)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([255 * x / width, 255 * y / height, 128 + 60 * np.sin(x / 20)], axis=-1)
    return img.astype(np.uint8)


def halves(height: int, width: int, first, second, vertical_split: bool = True) -> np.ndarray:
    """Left/right (or top/bottom) halves of two colours."""
    img = np.zeros((height, width, 3), np.uint8)
    if vertical_split:
        img[:, : width // 2], img[:, width // 2 :] = first, second
    else:
        img[: height // 2], img[height // 2 :] = first, second
    return img


RED, BLUE, GREEN = (230, 20, 20), (20, 20, 230), (20, 200, 20)


def close_to(pixel, colour, tol=30) -> bool:
    return bool(np.all(np.abs(np.asarray(pixel, int) - np.asarray(colour)) <= tol))


def test_square_box_trims_longer_side_equally():
    assert square_box(300, 100) == (100, 0, 200, 100)
    assert square_box(100, 301) == (0, 100, 100, 200)
    assert square_box(50, 50) == (0, 0, 50, 50)


def test_rgb_jpeg_resized_to_square(tmp_path):
    src = smooth_image(120, 200)
    Image.fromarray(src).save(tmp_path / "a.jpg", quality=95)
    out = load_rgb(tmp_path / "a.jpg", 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    expected = np.asarray(Image.fromarray(src).crop((40, 0, 160, 120)).resize((64, 64)))
    assert np.abs(out.astype(int) - expected).mean() < 4


def test_grayscale_becomes_three_equal_channels(tmp_path):
    Image.fromarray(smooth_image(80, 80)[..., 0]).save(tmp_path / "g.jpg")
    out = load_rgb(tmp_path / "g.jpg", 32)
    assert out.shape == (32, 32, 3)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    assert out.std() > 10  # the content survived, not a flat grey


@pytest.mark.parametrize(
    "kind, options",
    [
        ("4:2:0", {"subsampling": 2}),
        ("4:2:2", {"subsampling": 1}),
        ("4:4:4", {"subsampling": 0}),
        ("progressive", {"progressive": True}),
        ("grayscale", {}),
    ],
)
def test_plain_jpegs_decode_to_pillows_own_pixels(tmp_path, kind, options):
    """The libjpeg-turbo route (simplejpeg) takes these files and gives exactly the pixels
    Pillow's own decode gives, at every draft scale: the processed dataset, the evaluation and
    the served model's inputs do not depend on which route read a file."""
    rng = np.random.default_rng(0)
    texture = smooth_image(333, 517).astype(int) + rng.integers(-40, 40, (333, 517, 3))
    img = np.clip(texture, 0, 255).astype(np.uint8)
    Image.fromarray(img[..., 0] if kind == "grayscale" else img).save(
        tmp_path / "p.jpg", quality=90, **options
    )
    data = (tmp_path / "p.jpg").read_bytes()
    for size in (400, 160, 80, 40):  # scales 1, 1/2, 1/4 and 1/8 of 517x333
        with Image.open(tmp_path / "p.jpg") as im:
            im.draft("RGB", (size, size))
            assert image_io.draft_size(517, 333, size) == im.size
            im.load()
            expected = np.asarray(im.convert("RGB"))
        fast = image_io._plain_jpeg(data, size)
        assert fast is not None, (kind, size)
        assert fast[0].shape == expected.shape and np.array_equal(fast[0], expected), (kind, size)
        assert fast[1] == 517 * 333
        assert np.array_equal(image_io.decode_file(tmp_path / "p.jpg", size)[0], expected)


def test_cmyk_jpeg_converted_to_rgb(tmp_path):
    src = smooth_image(64, 64)
    Image.fromarray(src).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    out = load_rgb(tmp_path / "c.jpg", 64)
    assert np.abs(out.astype(int) - src).mean() < 8


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "BMP", "WEBP"])
def test_format_found_by_content_not_extension(tmp_path, fmt):
    src = halves(40, 40, RED, BLUE)
    Image.fromarray(src).save(tmp_path / "photo.jpg", format=fmt)
    out = load_rgb(tmp_path / "photo.jpg", 40)
    assert close_to(out[20, 2], RED) and close_to(out[20, 37], BLUE)


def test_exif_orientation_is_applied(tmp_path):
    # Stored 80 wide x 40 high, red left, blue right; orientation 6 means "rotate 90 degrees
    # clockwise to display", so the upright image is 40x80 with red on top.
    im = Image.fromarray(halves(40, 80, RED, BLUE))
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = load_rgb(tmp_path / "r.jpg", 32, center_crop=False)
    assert close_to(out[2, 16], RED) and close_to(out[29, 16], BLUE)


def test_transparency_composited_on_white(tmp_path):
    rgba = np.zeros((30, 30, 4), np.uint8)
    rgba[:, :15] = (200, 0, 0, 255)  # opaque red left, fully transparent right
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    out = load_rgb(tmp_path / "t.png", 30)
    assert close_to(out[15, 2], (200, 0, 0), 5) and close_to(out[15, 27], (255, 255, 255), 5)


def test_sixteen_bit_grayscale_scaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    out = load_rgb(tmp_path / "g16.png", 64)
    assert out[0, 0, 0] < 5 and out[-1, -1, 0] > 250 and 100 < out[32, 32, 0] < 155


def test_center_crop_keeps_middle_and_no_crop_stretches(tmp_path):
    img = np.zeros((100, 300, 3), np.uint8)
    img[:, :100], img[:, 100:200], img[:, 200:] = GREEN, RED, BLUE
    Image.fromarray(img).save(tmp_path / "wide.png")
    cropped = load_rgb(tmp_path / "wide.png", 50)
    assert close_to(cropped[25, 1], RED) and close_to(cropped[25, 48], RED)
    stretched = load_rgb(tmp_path / "wide.png", 48, center_crop=False)
    assert close_to(stretched[24, 1], GREEN) and close_to(stretched[24, 46], BLUE)


def test_tiny_image_upscaled_and_big_jpeg_reduced(tmp_path):
    Image.fromarray(smooth_image(20, 20)).save(tmp_path / "tiny.jpg")
    assert load_rgb(tmp_path / "tiny.jpg", 96).shape == (96, 96, 3)
    big = Image.fromarray(smooth_image(2000, 3000))
    big.save(tmp_path / "big.jpg", quality=90)
    out = load_rgb(tmp_path / "big.jpg", 64)
    expected = np.asarray(big.resize((64, 64), Image.Resampling.BOX, box=(500, 0, 2500, 2000)))
    assert np.abs(out.astype(int) - expected).mean() < 6  # draft mode kept the picture


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", image_io.EMPTY),
        (b"just some text, not pixels\n", image_io.NOT_IMAGE),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 10, image_io.NOT_IMAGE),  # a JPEG marker, no header
    ],
)
def test_unusable_bytes_raise_bad_image_with_reason(tmp_path, content, reason):
    (tmp_path / "x.jpg").write_bytes(content)
    with pytest.raises(BadImage) as info:
        load_rgb(tmp_path / "x.jpg", 32)
    assert info.value.reason == reason


def test_truncated_jpeg_is_skipped_not_padded(tmp_path):
    Image.fromarray(smooth_image(200, 200)).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    for keep in (len(data) // 2, 400):  # cut in the pixel data, cut in the header
        (tmp_path / "cut.jpg").write_bytes(data[:keep])
        with pytest.raises(BadImage) as info:
            load_rgb(tmp_path / "cut.jpg", 32)
        assert info.value.reason == image_io.TRUNCATED, keep


def test_missing_file_is_unreadable(tmp_path):
    with pytest.raises(BadImage) as info:
        load_rgb(tmp_path / "gone.jpg", 32)
    assert info.value.reason == image_io.UNREADABLE


def test_decompression_guard(tmp_path, monkeypatch):
    Image.fromarray(smooth_image(100, 100)).save(tmp_path / "p.png")
    Image.fromarray(smooth_image(400, 400)).save(tmp_path / "j.jpg")
    monkeypatch.setattr(image_io, "MAX_DECODE_PIXELS", 5_000)
    with pytest.raises(BadImage) as info:
        load_rgb(tmp_path / "p.png", 32)
    assert info.value.reason == image_io.TOO_LARGE
    # A JPEG of 160,000 pixels decodes at 1/8 scale (2,500 pixels): under the limit.
    assert load_rgb(tmp_path / "j.jpg", 32).shape == (32, 32, 3)


def _load_or_reason(path):
    try:
        image = load_rgb(path, 32)
    except BadImage as e:
        return str(path), e.reason, None
    return str(path), None, (image.shape, str(image.dtype))


def test_fuzzed_files_load_or_give_a_reason(tmp_path):
    """>= 300 mutated files: each decodes to 32x32x3 uint8 or fails with a known reason, within
    a per-image time bound (a worker process, so a hang cannot stop the test)."""
    import multiprocessing

    from helpers import fuzzed_image_files

    paths = fuzzed_image_files(tmp_path, count=320)
    reasons = {
        image_io.EMPTY,
        image_io.NOT_IMAGE,
        image_io.TRUNCATED,
        image_io.CORRUPT,
        image_io.TOO_LARGE,
    }
    results = {}
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pending = pool.imap(_load_or_reason, paths)
        for _ in paths:
            path, reason, shape = pending.next(timeout=30)  # per image
            results[path] = (reason, shape)
    assert len(results) == len(paths) >= 300
    for path, (reason, shape) in results.items():
        assert (reason in reasons) != (shape is not None), (path, reason, shape)
        if shape is not None:
            assert shape == ((32, 32, 3), "uint8"), path
    good = [p for p in paths if p.name.startswith("ok_")]
    assert all(results[str(p)][1] for p in good), [results[str(p)] for p in good]
    for name in ("huge.png", "wide.png", "huge.gif"):
        assert results[str(tmp_path / name)][0] == image_io.TOO_LARGE, name
    assert results[str(tmp_path / "empty.jpg")][0] == image_io.EMPTY

"""read_xray / read_xray_size on PNG, JPEG and DICOM files, and their failure modes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from dataformats import write_dicom

from cxr.data.io import ImageReadError, read_xray, read_xray_size


def test_png_gray_rgb_rgba_and_16bit(tmp_path):
    gray = np.arange(48 * 32, dtype=np.uint32).reshape(48, 32) % 251
    gray = gray.astype(np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    np.testing.assert_array_equal(read_xray(str(tmp_path / "g.png")), gray)
    assert read_xray_size(str(tmp_path / "g.png")) == (48, 32)

    bgr = np.stack([gray] * 3, -1)
    cv2.imwrite(str(tmp_path / "c.png"), bgr)
    np.testing.assert_array_equal(read_xray(str(tmp_path / "c.png")), gray)
    bgra = np.concatenate([bgr, np.full((48, 32, 1), 255, np.uint8)], -1)
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    np.testing.assert_array_equal(read_xray(str(tmp_path / "a.png")), gray)

    g16 = np.zeros((8, 4), np.uint16)
    g16[:, 1], g16[:, 2], g16[:, 3] = 1000, 2000, 3000  # min 0, max 3000: min-max to 0..255
    cv2.imwrite(str(tmp_path / "h.png"), g16)
    out = read_xray(str(tmp_path / "h.png"))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], [0, 85, 170, 255])


def test_jpeg_size_from_header(tmp_path):
    img = np.full((37, 53), 128, np.uint8)
    cv2.imwrite(str(tmp_path / "x.jpg"), img)
    assert read_xray_size(str(tmp_path / "x.jpg")) == (37, 53)
    assert abs(int(read_xray(str(tmp_path / "x.jpg")).mean()) - 128) <= 1


def test_dicom_window_monochrome1_and_16bit(tmp_path):
    raw = np.array([[0, 1000, 1500, 2000, 4000]], np.uint16).repeat(3, 0)
    # Window center 1500, width 1001: [1000, 2000] -> [0, 255] (DICOM linear rule).
    p = write_dicom(str(tmp_path / "w.dcm"), raw, window=(1500, 1001))
    np.testing.assert_array_equal(read_xray(p)[0], [0, 0, 128, 255, 255])
    assert read_xray_size(p) == (3, 5)
    p1 = write_dicom(
        str(tmp_path / "m1.dicom"), raw, photometric="MONOCHROME1", window=(1500, 1001)
    )
    np.testing.assert_array_equal(read_xray(p1)[0], [255, 255, 127, 0, 0])
    # No window: min-max after the modality LUT (slope 2, intercept -100).
    p2 = write_dicom(str(tmp_path / "n.dcm"), raw, slope=2.0, intercept=-100.0)
    np.testing.assert_array_equal(read_xray(p2)[0], [0, 64, 96, 128, 255])
    # DICOM recognized by its magic even without the extension.
    p3 = write_dicom(str(tmp_path / "noext"), raw.astype(np.uint8) // 20)
    assert read_xray(p3).shape == (3, 5)


def test_errors_name_the_file(tmp_path):
    missing = str(tmp_path / "missing.png")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    ok, buf = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8))
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(buf.tobytes()[: len(buf) // 2])
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"\0" * 128 + b"DICM" + b"junk" * 10)
    for path in (missing, str(empty), str(trunc), str(garbage)):
        with pytest.raises(ImageReadError, match=path.replace(".", r"\.")) as e:
            read_xray(path)
        assert isinstance(e.value, OSError) and e.value.file == path
    for path in (missing, str(empty)):
        with pytest.raises(ImageReadError, match="cannot read image"):
            read_xray_size(path)


def test_read_at_16_bits_keeps_the_8_bit_steps(tmp_path):
    """bit_depth=16: the same window / inversion / scaling as 8 bits, 257 times finer."""
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 4096, (40, 30)).astype(np.uint16)
    for photometric in ("MONOCHROME2", "MONOCHROME1"):
        for window in ((1024.0, 2048.0), None):  # window (with rescale) and min-max
            path = write_dicom(str(tmp_path / f"{photometric}{window}.dcm"), raw, photometric,
                               window, slope=1.0, intercept=-1024.0)  # fmt: skip
            img8, img16 = read_xray(path), read_xray(path, bit_depth=16)
            assert img8.dtype == np.uint8 and img16.dtype == np.uint16
            assert np.abs(img16 / 257.0 - img8).max() <= 0.5 + 1e-6
            assert img16.max() == 65535 and img16.min() == 0
            ref = raw.astype(float) if window is None else np.clip(
                (raw - 1024.0 - (1024.0 - 0.5)) / 2047.0 + 0.5, 0, 1)  # fmt: skip
            flip = photometric == "MONOCHROME1"
            corr = np.corrcoef(ref.ravel(), img16.astype(float).ravel())[0, 1]
            assert corr < -0.99 if flip else corr > 0.99
    gray = rng.integers(0, 256, (6, 5)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    np.testing.assert_array_equal(
        read_xray(str(tmp_path / "g.png"), 16), gray.astype(np.uint16) * 257
    )
    g16 = rng.integers(100, 900, (6, 5)).astype(np.uint16)  # a 16-bit PNG is kept as stored
    cv2.imwrite(str(tmp_path / "h.png"), g16)
    np.testing.assert_array_equal(read_xray(str(tmp_path / "h.png"), 16), g16)
    with pytest.raises(ValueError, match="bit_depth"):
        read_xray(str(tmp_path / "h.png"), 12)
def test_decode_xray_of_bytes_equals_read_xray_of_the_file(tmp_path):
    """A shard member's bytes decode as the same file would (16-bit: min-max to 8 bit)."""
    from cxr.data.io import decode_xray

    img16 = (np.arange(40 * 30, dtype=np.uint16).reshape(40, 30) * 50).astype(np.uint16)
    path = str(tmp_path / "film16.png")
    cv2.imwrite(path, img16)
    with open(path, "rb") as f:
        data = f.read()
    np.testing.assert_array_equal(decode_xray(data, "shard.tar#film16"), read_xray(path))
    with pytest.raises(ImageReadError, match="shard.tar#k: file is empty"):
        decode_xray(b"", "shard.tar#k")
    with pytest.raises(ImageReadError, match="shard.tar#k: undecodable or truncated"):
        decode_xray(data[: len(data) // 3], "shard.tar#k")

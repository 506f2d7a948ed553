"""The one definition of face alignment, shared with the service.

A face is aligned by the least-squares similarity transform (Umeyama 1991:
scale, rotation, translation; no shear) that maps its five landmarks onto the
standard 112x112 ArcFace template, then warped with bilinear interpolation.
The Rust service (`crates/model/src/align.rs`) implements exactly this, and
`tests/tests/alignment.rs` checks that both produce the same crop.

Conventions both sides follow:
- landmarks in pixel coordinates, pixel centres at integer positions, order:
  right eye, left eye, nose tip, right mouth corner, left mouth corner (the
  subject's right is the image's left), as YuNet reports them;
- output pixel (x, y) samples the source at inverse(M) @ (x, y, 1);
- bilinear weights from the fractional part; samples outside the image take
  the nearest edge pixel (edge replication), so tight crops get no black
  border;
- the result is rounded as floor(v + 0.5) and clipped to 0..255.

    python -m vargface.align --image photo.png --landmarks x1,y1,...,x5,y5 --out crop.png
"""

import argparse
from pathlib import Path

import numpy as np

CROP_SIZE = 112

# Standard ArcFace (insightface) template for a 112x112 crop.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],  # right eye
        [73.5318, 51.5014],  # left eye
        [56.0252, 71.7366],  # nose tip
        [41.5493, 92.3655],  # right mouth corner
        [70.7299, 92.2041],  # left mouth corner
    ],
    dtype=np.float64,
)


def similarity_transform(src: np.ndarray, dst: np.ndarray = ARCFACE_TEMPLATE) -> np.ndarray:
    """2x3 matrix M (float64) minimising sum |M @ [src, 1] - dst|^2 (Umeyama)."""
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    n = src.shape[0]
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_d, dst_d = src - src_mean, dst - dst_mean
    cov = dst_d.T @ src_d / n
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0  # a reflection is not a similarity: flip the weakest axis
    rotation = u @ np.diag(d) @ vt
    var_src = (src_d ** 2).sum() / n
    scale = (s * d).sum() / var_src if var_src > 1e-12 else 1.0
    matrix = np.zeros((2, 3), dtype=np.float64)
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Bilinear warp of an HxWxC uint8 image by the 2x3 `matrix` (source->crop)."""
    height, width = image.shape[:2]
    a = np.vstack([matrix, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(a)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    x0, y0 = np.floor(sx), np.floor(sy)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    x0 = x0.astype(np.int64)
    y0 = y0.astype(np.int64)
    xa, xb = np.clip(x0, 0, width - 1), np.clip(x0 + 1, 0, width - 1)
    ya, yb = np.clip(y0, 0, height - 1), np.clip(y0 + 1, 0, height - 1)
    src = image.astype(np.float64)
    top = src[ya, xa] * (1 - fx) + src[ya, xb] * fx
    bottom = src[yb, xa] * (1 - fx) + src[yb, xb] * fx
    value = top * (1 - fy) + bottom * fy
    return np.clip(np.floor(value + 0.5), 0, 255).astype(np.uint8)


def align(image: np.ndarray, landmarks: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """The aligned size x size crop of the face with these five landmarks."""
    template = ARCFACE_TEMPLATE * (size / CROP_SIZE)
    return warp_affine(image, similarity_transform(landmarks, template), size)


def main(argv: list[str] | None = None) -> None:
    from PIL import Image

    parser = argparse.ArgumentParser(description="Align one face to the 112x112 template.")
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--landmarks", required=True, help="x1,y1,...,x5,y5 in pixels")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)
    points = np.array([float(v) for v in args.landmarks.split(",")]).reshape(5, 2)
    rgb = np.asarray(Image.open(args.image).convert("RGB"))
    Image.fromarray(align(rgb, points)).save(args.out)


if __name__ == "__main__":
    main()

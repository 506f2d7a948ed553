"""YuNet face detection through ONNX Runtime, as the service does it.

The fp32 detector comes from `python -m vargface.thirdparty`. Pre- and
post-processing follow OpenCV's FaceDetectorYN (which YuNet was published
for), and `crates/model/src/detector.rs` implements the same steps:

1. EXIF orientation applied, RGB;
2. if the longer side exceeds `max_side`, the image is scaled down to it
   (triangle filter), and boxes and landmarks are scaled back afterwards;
3. BGR, 0..255 float, zero-padded at the bottom and right to multiples of 32;
4. per stride s in (8, 16, 32) and grid cell (row r, column c):
   score = sqrt(clamp(cls) * clamp(obj)); centre = (c + dx, r + dy) * s;
   size = exp(dw, dh) * s; landmark n = (c + kx_n, r + ky_n) * s;
5. candidates with score >= `score_threshold`, greedy NMS at IoU `nms_threshold`.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

STRIDES = (8, 16, 32)
SCORE_THRESHOLD = 0.5
NMS_THRESHOLD = 0.3
MAX_SIDE = 640
TOP_K = 5000
DEFAULT_DETECTOR = Path(".deps/models/yunet_2023mar_fp32.onnx")


@dataclass
class Face:
    box: np.ndarray  # x, y, width, height in pixels of the original image
    landmarks: np.ndarray  # (5, 2), order as in vargface.align
    score: float

    @property
    def area(self) -> float:
        return float(self.box[2] * self.box[3])


def load_rgb(path: str | Path) -> np.ndarray:
    """HxWx3 uint8 RGB with the EXIF orientation applied."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))


def resize_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.BILINEAR))


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box `a` with each row of `b` (x, y, w, h)."""
    x1 = np.maximum(a[0], b[:, 0])
    y1 = np.maximum(a[1], b[:, 1])
    x2 = np.minimum(a[0] + a[2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[1] + a[3], b[:, 1] + b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = a[2] * a[3] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def decode(outputs: dict[str, np.ndarray], pad_h: int, pad_w: int,
           score_threshold: float = SCORE_THRESHOLD) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (N,4), landmarks (N,5,2) and scores (N,) before NMS."""
    boxes, marks, scores = [], [], []
    for s in STRIDES:
        rows, cols = pad_h // s, pad_w // s
        cls = np.clip(outputs[f"cls_{s}"].reshape(-1), 0, 1)
        obj = np.clip(outputs[f"obj_{s}"].reshape(-1), 0, 1)
        bbox = outputs[f"bbox_{s}"].reshape(-1, 4)
        kps = outputs[f"kps_{s}"].reshape(-1, 10)
        score = np.sqrt(cls * obj)
        keep = np.nonzero(score >= score_threshold)[0]
        r, c = (keep // cols).astype(np.float32), (keep % cols).astype(np.float32)
        assert rows * cols == cls.size
        cx = (c + bbox[keep, 0]) * s
        cy = (r + bbox[keep, 1]) * s
        w = np.exp(bbox[keep, 2]) * s
        h = np.exp(bbox[keep, 3]) * s
        boxes.append(np.stack([cx - w / 2, cy - h / 2, w, h], axis=1))
        k = kps[keep].reshape(-1, 5, 2)
        marks.append(np.stack([(k[..., 0] + c[:, None]) * s, (k[..., 1] + r[:, None]) * s], axis=2))
        scores.append(score[keep])
    return np.concatenate(boxes), np.concatenate(marks), np.concatenate(scores)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float = NMS_THRESHOLD,
        top_k: int = TOP_K) -> list[int]:
    """Greedy non-maximum suppression; ties keep the earlier candidate."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])[:top_k]
    kept: list[int] = []
    for i in order:
        if not kept or np.all(iou(boxes[i], boxes[kept]) <= threshold):
            kept.append(i)
    return kept


class YuNet:
    def __init__(self, model_path: str | Path, score_threshold: float = SCORE_THRESHOLD,
                 nms_threshold: float = NMS_THRESHOLD, max_side: int = MAX_SIDE,
                 threads: int = 0):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(model_path), options,
                                            providers=["CPUExecutionProvider"])
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_side = max_side

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an HxWx3 uint8 RGB image, highest score first."""
        height, width = rgb.shape[:2]
        scale = 1.0
        work = rgb
        if max(height, width) > self.max_side:
            scale = self.max_side / max(height, width)
            work = resize_rgb(rgb, max(1, round(width * scale)), max(1, round(height * scale)))
        h, w = work.shape[:2]
        pad_h, pad_w = -(-h // 32) * 32, -(-w // 32) * 32
        blob = np.zeros((1, 3, pad_h, pad_w), dtype=np.float32)
        blob[0, :, :h, :w] = work[..., ::-1].transpose(2, 0, 1)
        names = [o.name for o in self.session.get_outputs()]
        outputs = dict(zip(names, self.session.run(None, {"input": blob})))
        boxes, marks, scores = decode(outputs, pad_h, pad_w, self.score_threshold)
        sx, sy = width / w, height / h
        faces = []
        for i in nms(boxes, scores, self.nms_threshold):
            box = boxes[i] * np.array([sx, sy, sx, sy], dtype=np.float32)
            faces.append(Face(box.astype(np.float64),
                              (marks[i] * np.array([sx, sy], dtype=np.float32)).astype(np.float64),
                              float(scores[i])))
        return faces


def largest(faces: list[Face]) -> Face | None:
    """The policy the service's Enroll and the LFW protocol use: largest box."""
    return max(faces, key=lambda f: f.area, default=None)


def main(argv: list[str] | None = None) -> None:
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Print the faces YuNet finds in an image, as JSON.")
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--detector", type=Path, default=DEFAULT_DETECTOR)
    args = parser.parse_args(argv)
    faces = YuNet(args.detector).detect(load_rgb(args.image))
    print(json.dumps([{"box": f.box.tolist(), "landmarks": f.landmarks.tolist(), "score": f.score}
                      for f in faces]))


if __name__ == "__main__":
    main()

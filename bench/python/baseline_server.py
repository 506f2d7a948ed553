"""The per-request Python server vargid is measured against (`vargid-bench baseline`).

It serves the same `vargid.v1.FaceService` API for Embed, Enroll, Identify and
CreateGallery, the way InsightFace-REST and deepface serve a model: grpcio threads,
one ONNX Runtime call per request (batching only within a request), YuNet detection
and 5-point alignment in numpy (the training pipeline's `vargface.detect` and
`vargface.align`, which match the service's), an in-memory gallery searched with a
numpy matrix product. No cross-request batching, no durable store.

    .venv/bin/python bench/python/baseline_server.py [--port 0] [--workers 16]

Prints `baseline: listening on 127.0.0.1:PORT` once it serves.
"""

import argparse
import io
import sys
import tempfile
import threading
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
from grpc_tools import protoc
from PIL import Image

from vargface.align import align
from vargface.detect import DEFAULT_DETECTOR, YuNet, largest

ROOT = Path(__file__).resolve().parents[2]


def generated_stubs():
    """Compiles proto/vargid/v1/face_service.proto into a temporary package."""
    out = Path(tempfile.mkdtemp(prefix="vargid-baseline-"))
    proto = ROOT / "proto"
    rc = protoc.main(["protoc", f"-I{proto}", f"--python_out={out}", f"--grpc_python_out={out}",
                      str(proto / "vargid/v1/face_service.proto")])
    if rc != 0:
        sys.exit(f"baseline: protoc failed ({rc})")
    sys.path.insert(0, str(out))
    from vargid.v1 import face_service_pb2, face_service_pb2_grpc  # noqa: E402

    return face_service_pb2, face_service_pb2_grpc


pb, pb_grpc = generated_stubs()


class Model:
    def __init__(self, model: Path, detector: Path, threads: int):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.detector = YuNet(detector, threads=threads)

    def crop(self, image) -> tuple[np.ndarray | None, object]:
        """The aligned 112x112 crop of an Image message, and the detected face."""
        rgb = np.asarray(Image.open(io.BytesIO(image.encoded)).convert("RGB"))
        aligned = image.location == pb.FACE_LOCATION_ALIGNED or (
            image.location == pb.FACE_LOCATION_AUTO and rgb.shape[:2] == (112, 112))
        if aligned:
            return rgb, None
        face = largest(self.detector.detect(rgb))
        if face is None:
            return None, None
        return align(rgb, face.landmarks), face

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        batch = np.stack(crops).astype(np.float32).transpose(0, 3, 1, 2)
        out = self.session.run(None, {self.input: batch})[0]
        return out / np.linalg.norm(out, axis=1, keepdims=True)


class Servicer(pb_grpc.FaceServiceServicer):
    def __init__(self, model: Model):
        self.model = model
        self.lock = threading.Lock()
        self.ids: list[str] = []
        self.templates = np.zeros((0, 0), dtype=np.float32)

    def _crops(self, images, context):
        crops, faces = [], []
        for i, image in enumerate(images):
            crop, face = self.model.crop(image)
            if crop is None:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"images[{i}]: no face found in the image")
            crops.append(crop)
            faces.append(face)
        return crops, faces

    def Embed(self, request, context):
        crops, faces = self._crops(request.images, context)
        embeddings = self.model.embed(crops)
        return pb.EmbedResponse(images=[
            pb.ImageEmbeddings(faces=[pb.FaceEmbedding(face=face_message(f), embedding=e.tolist())])
            for f, e in zip(faces, embeddings)])

    def CreateGallery(self, request, context):
        return pb.GalleryInfo(name=request.name)

    def Enroll(self, request, context):
        crops, _ = self._crops(request.images, context)
        embeddings = self.model.embed(crops)
        with self.lock:
            start = len(self.ids)
            self.ids.extend([request.identity_id] * len(embeddings))
            self.templates = embeddings if start == 0 else np.vstack([self.templates, embeddings])
        return pb.EnrollResponse(identity_id=request.identity_id, created=True,
                                 face_ids=list(range(start, start + len(embeddings))),
                                 face_count=len(embeddings))

    def Identify(self, request, context):
        crops, faces = self._crops([request.image], context)
        probe = self.model.embed(crops)[0]
        with self.lock:
            ids, templates = self.ids, self.templates
        candidates = []
        if ids:
            scores = templates @ probe
            best = np.argsort(-scores)[:max(1, request.top_k)]
            candidates = [pb.Candidate(identity_id=ids[i], score=float(scores[i]),
                                       is_match=bool(scores[i] >= 0.36), face_id=int(i)) for i in best]
        return pb.IdentifyResponse(faces=[pb.FaceIdentification(face=face_message(faces[0]),
                                                                candidates=candidates)],
                                   threshold=0.36)


def face_message(face):
    if face is None:
        return pb.Face()
    x, y, w, h = (float(v) for v in face.box)
    return pb.Face(box=pb.BoundingBox(x=x, y=y, width=w, height=h), detector_score=face.score,
                   landmarks=pb.Landmarks(points=[pb.Point(x=float(px), y=float(py))
                                                  for px, py in face.landmarks]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--workers", type=int, default=16, help="grpcio handler threads")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: one per core)")
    p.add_argument("--model", type=Path, default=ROOT / "models/vargfacenet.onnx")
    p.add_argument("--detector", type=Path, default=ROOT / DEFAULT_DETECTOR)
    args = p.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers),
                         options=[("grpc.max_receive_message_length", 64 << 20)])
    pb_grpc.add_FaceServiceServicer_to_server(Servicer(Model(args.model, args.detector, args.threads)), server)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(f"baseline: listening on 127.0.0.1:{port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()

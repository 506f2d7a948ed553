#!/usr/bin/env bash
# Assembles the files of a vargid container image, so that the Dockerfile only copies
# them (and the tests can start exactly what an image would run):
#   OUT/rootfs/usr/local/bin/vargid             the server (cargo build; --features cuda
#                                               for the CUDA variant)
#   OUT/rootfs/usr/local/bin/grpc-health-probe  the health check (install-go-tools.sh)
#   OUT/rootfs/opt/onnxruntime/                 ONNX Runtime: the CPU library
#                                               (install-deps.sh), or the CUDA build with
#                                               its CUDA 13 / cuDNN 9 libraries
#                                               (install-ort-cuda.sh)
#   OUT/rootfs/opt/onnxruntime-openvino/        (CPU variant) ONNX Runtime's OpenVINO
#                                               build (install-ort-openvino.sh)
#   OUT/rootfs/opt/vargid/models/               the ONNX models: the embedder (models/)
#                                               and the face detector (install-deps.sh);
#                                               the image's working directory is /opt/vargid
#   OUT/rootfs/etc/vargid/vargid.toml           config/vargid.container.toml
#   OUT/data/                                   the gallery volume's mount point (the
#                                               Dockerfile gives it to the image's user)
# Usage: scripts/stage-image.sh --variant cpu|cuda --out DIR [--profile release|dev] [--no-build]
#   --no-build  take the binary cargo already built for the profile (tests use it on
#               the dev build; a CUDA stage then holds a binary without CUDA support).
# The Dockerfile's builder runs it with --profile release.
set -euo pipefail
cd "$(dirname "$0")/.."

# The CPU and CUDA builds of ONNX Runtime (scripts/install-deps.sh says why they differ).
CPU_ORT_VERSION="1.26.0"
CUDA_ORT_VERSION="1.31.1"
# config/vargid.container.toml names it as models/<this name>.
DETECTOR=".deps/models/yunet_2023mar_fp32.onnx"
variant="" out="" profile="release" build=1
while [ "$#" -gt 0 ]; do
  case "$1" in
    --variant) variant="$2"; shift ;;
    --out) out="$2"; shift ;;
    --profile) profile="$2"; shift ;;
    --no-build) build=0 ;;
    *) echo "stage-image: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
case "$variant" in cpu|cuda) ;; *) echo "stage-image: --variant cpu or cuda" >&2; exit 2 ;; esac
[ -n "$out" ] || { echo "stage-image: --out DIR" >&2; exit 2; }
case "$profile" in
  release) target_dir="target/release" ;;
  dev|debug) profile="dev"; target_dir="target/debug" ;;
  *) echo "stage-image: --profile release or dev" >&2; exit 2 ;;
esac

features=()
[ "$variant" = "cuda" ] && features=(--features cuda)
if [ "$build" -eq 1 ]; then
  echo "stage-image: cargo build --profile $profile ${features[*]}"
  cargo build --locked --profile "$profile" -p vargid-server --bin vargid "${features[@]}"
fi
[ -x "$target_dir/vargid" ] || { echo "stage-image: $target_dir/vargid missing (build it, or drop --no-build)" >&2; exit 1; }

if [ "$variant" = "cuda" ]; then
  ./scripts/install-ort-cuda.sh
  ort_version="${CUDA_ORT_VERSION}"
  ort_dir=".deps/onnxruntime-gpu-${ort_version}"
else
  ./scripts/install-deps.sh
  ort_version="${CPU_ORT_VERSION}"
  ort_dir=".deps/onnxruntime-${ort_version}"
fi
[ -x .deps/bin/grpc-health-probe ] || ./scripts/install-go-tools.sh grpc-health-probe

rm -rf "$out/rootfs" "$out/data"
root="$out/rootfs"
mkdir -p "$root/usr/local/bin" "$root/opt/onnxruntime" "$root/opt/vargid" "$root/etc/vargid" "$out/data"
install -m 0755 "$target_dir/vargid" "$root/usr/local/bin/vargid"
install -m 0755 .deps/bin/grpc-health-probe "$root/usr/local/bin/grpc-health-probe"
# Hard links where the file system allows (the CUDA libraries weigh 2.2 GB), copies
# elsewhere.
for lib in "$ort_dir"/lib*.so*; do
  [ -L "$lib" ] && continue
  ln -f "$lib" "$root/opt/onnxruntime/" 2>/dev/null || install -m 0644 "$lib" "$root/opt/onnxruntime/"
done
# The image's configuration names the library without its version.
ln -sfn "libonnxruntime.so.${ort_version}" "$root/opt/onnxruntime/libonnxruntime.so"
if [ "$variant" = "cpu" ]; then
  ./scripts/install-ort-openvino.sh
  ov_dir="$(readlink -f .deps/onnxruntime-openvino)"
  mkdir -p "$root/opt/onnxruntime-openvino"
  for lib in "$ov_dir"/lib*.so*; do
    [ -L "$lib" ] && continue
    ln -f "$lib" "$root/opt/onnxruntime-openvino/" 2>/dev/null \
      || install -m 0644 "$lib" "$root/opt/onnxruntime-openvino/"
  done
  ln -sfn "$(basename "$(readlink "$ov_dir/libonnxruntime.so")")" \
    "$root/opt/onnxruntime-openvino/libonnxruntime.so"
fi
cp -R models "$root/opt/vargid/models"
install -m 0644 "$DETECTOR" "$root/opt/vargid/models/"
chmod -R a+rX,go-w "$root/opt/vargid/models"
install -m 0644 config/vargid.container.toml "$root/etc/vargid/vargid.toml"
echo "stage-image: $variant image files in $out ($(du -sh "$root" | cut -f1))"

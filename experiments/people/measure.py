"""Issue 21, fourth pass: build_engine.py --int8 calibrated on photos of people, judged on other people photos.

The photos come from registry packages (docs/foreign.md, "Fourth pass"), laid out under PEOPLE_PHOTOS:

    pip download --no-deps -d pkgs ultralytics==8.4.190 insightface==2.1
    pip download --no-deps --no-binary :all: -d pkgs face_recognition==1.3.0
    npm pack @vladmandic/face-api@1.7.15 --pack-destination pkgs
    (cd pkgs && apt-get download opencv-doc=4.6.0+dfsg-12)
    # then: face-api/sample1-6.jpg (package/demo/), face_recognition/{obama,obama2,obama3,biden}.jpg
    # (tests/test_images/), insightface/t1.jpg (insightface/data/images/), ultralytics/{bus,zidane}.jpg
    # (ultralytics/assets/), opencv/messi5.jpg (usr/share/doc/opencv-doc/examples/data/)

    PEOPLE_PHOTOS=src CALIB_VIEWS=4 PYTHONPATH=$PWD:$PWD/tests python experiments/people/measure.py OUT.jsonl [selfie ...]
"""

import json
import os
import sys
import time
from pathlib import Path

import cv2
import onnx

sys.path.insert(0, "tests")
from fixtures import real_models  # noqa: E402
from foreign.test_real_models import artifact_agreement, int8_convs  # noqa: E402
from conftest import run_script  # noqa: E402

SRC = Path(os.environ.get("PEOPLE_PHOTOS", "people"))
CALIB_PEOPLE = [
    "face-api/sample1.jpg",
    "face-api/sample3.jpg",
    "face-api/sample5.jpg",
    "face_recognition/obama.jpg",
    "face_recognition/biden.jpg",
    "insightface/t1.jpg",
    "ultralytics/zidane.jpg",
]
HELD_PEOPLE = [
    "face-api/sample2.jpg",
    "face-api/sample4.jpg",
    "face-api/sample6.jpg",
    "face_recognition/obama2.jpg",
    "face_recognition/obama3.jpg",
    "ultralytics/bus.jpg",
    "opencv/messi5.jpg",
]
VIEWS = 4
if os.environ.get("SWAP"):  # the robustness check: the two photo sets trade places
    CALIB_PEOPLE, HELD_PEOPLE = HELD_PEOPLE, CALIB_PEOPLE
TAG = "swap" if os.environ.get("SWAP") else ""
CALIB_VIEWS = int(os.environ.get("CALIB_VIEWS", "4"))
METHODS = os.environ.get("METHODS", "").split()
WORK = Path(os.environ.get("PEOPLE_WORK", "/tmp/people/work"))


def write_views(files, size, folder: Path, seed: int, count: int = VIEWS):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(files):
        image = cv2.imread(str(SRC / name))[..., ::-1]
        for k, view in enumerate(real_models.views(image, size, count, seed + i)):
            cv2.imwrite(str(folder / f"{Path(name).stem}_{k}.png"), view[..., ::-1])
    return folder


def held_out_set(model, folder: Path):
    _, inputs = model.load(folder)
    frames = [cv2.imread(str(f)) for f in sorted(folder.glob("*.png"))]
    probability = real_models.run_onnx(model.onnx, inputs)[..., 0]
    return {
        "frames": frames,
        "reference": probability > 0.5,
        "images": len(frames),
        "person_share": float((probability > 0.5).mean()),
        "uncertain_share": float(((probability > 0.1) & (probability < 0.9)).mean()),
    }


def main():
    out = Path(sys.argv[1])
    names = sys.argv[2:] or list(real_models.MODELS)
    for name in names:
        model = real_models.build(name, WORK / "models")
        root = WORK / (name + TAG)
        calib_people = write_views(CALIB_PEOPLE, model.size, root / f"calib_people{CALIB_VIEWS}", seed=0, count=CALIB_VIEWS)
        held_people = write_views(HELD_PEOPLE, model.size, root / "held_people", seed=100)
        mixed = root / f"calib_mixed{CALIB_VIEWS}"
        mixed.mkdir(exist_ok=True)
        for f in list(calib_people.glob("*.png")) + list(model.calibration.glob("*.png")):
            (mixed / f.name).write_bytes(f.read_bytes())
        sets = {"held_people": held_out_set(model, held_people), "held_current": held_out_set(model, model.held_out)}
        with out.open("a") as log:
            log.write(
                json.dumps(
                    {
                        "model": name,
                        **{k: {x: v[x] for x in ("images", "person_share", "uncertain_share")} for k, v in sets.items()},
                    }
                )
                + "\n"
            )
        for calib_label, calib in (("people", calib_people), ("people+current", mixed)):
            for mode, extra in (
                ("plain", ["--search-minutes", "0"]),
                ("default", []),
                ("min-agreement 99", ["--min-agreement", "99"]),
            ) + tuple((f"{m} 99", ["--calib-method", m, "--min-agreement", "99"]) for m in METHODS):
                engines = root / f"engines{CALIB_VIEWS}_{calib_label}_{mode.replace(' ', '')}"
                started = time.time()
                run = run_script(
                    "build_engine.py",
                    "--onnx",
                    model.onnx,
                    "--name",
                    name,
                    "--input-format",
                    "tensor-nhwc",
                    "--mean",
                    "0",
                    "0",
                    "0",
                    "--std",
                    "1",
                    "1",
                    "1",
                    "--num-classes",
                    "1",
                    "--int8",
                    "--calib-dir",
                    calib,
                    "--engines-dir",
                    engines,
                    "--allow-accuracy-drop",
                    "--no-progress",
                    "--force",
                    *extra,
                    timeout=1800,
                )
                row = {
                    "model": name,
                    "calibration": calib_label,
                    "calib_images": len(list(calib.glob("*.png"))),
                    "mode": mode,
                    "swap": bool(TAG),
                    "calib_views": CALIB_VIEWS,
                    "seconds": round(time.time() - started),
                    "rc": run.returncode,
                }
                if run.returncode == 0:
                    artifact = engines / f"{name}.int8.onnx"
                    sidecar = json.loads(artifact.with_name(artifact.name + ".json").read_text())
                    row |= {
                        "int8_convs": int8_convs(onnx.load(str(artifact)))[0],
                        "kept_float": len(sidecar["details"].get("kept_float") or []),
                        "build_agreement": sidecar["verification"]["rows"][0]["agreement"],
                    }
                    for label, held in sets.items():
                        for backend in ("onnxruntime", "openvino"):
                            row[f"{label}:{backend}"] = artifact_agreement(artifact, backend, held["frames"], held["reference"])
                else:
                    row["error"] = (run.stdout + run.stderr)[-1500:]
                print(json.dumps(row), flush=True)
                with out.open("a") as log:
                    log.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()

"""cxr: a detectron2 plugin for lesion detection on chest X-rays.

``install_requires`` holds every package that training, evaluation (with its plots), export to
ONNX, ensembles and test-time augmentation import. Optional parts are extras
(``pip install '.[deploy]'``; docs/install.md); code that needs one imports it through
``cxr_runtime.optional.import_optional``, whose table names the extra of each module.
``requirements*.txt`` pin the tested versions; ``tests/test_install.py`` checks that every
module imported by cxr and cxr_runtime is listed here.

detectron2 itself is installed by ``tools/install_detectron2.py`` (see docs/install.md): it has
no wheels on the package registries, so it is not listed in ``install_requires``; that script
also installs detectron2's own dependencies, which are repeated below so that ``pip install .``
alone brings them.
"""
from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "torch>=2.0",
    "torchvision",
    "numpy",
    "pillow",
    "PyYAML",
    "fvcore",
    "iopath<0.1.10",
    "pycocotools",
    "albumentations>=2.0",
    "pandas",
    "opencv-python-headless",
    "omegaconf>=2.1,<2.4",  # hydra-core caps it
    "tensorboard",
    "timm",
    "safetensors",
    "huggingface-hub",
    "pydicom>=3.0",
    "matplotlib",
    "tqdm",
    "tabulate",
    # detectron2 v0.6's own runtime dependencies (it is installed with --no-deps)
    "cloudpickle",
    "termcolor",
    "yacs",
    "setuptools<81",  # detectron2 v0.6 imports pkg_resources
    "scikit-learn",  # classifier evaluation: ROC curves, t-SNE
    "ensemble-boxes",  # box fusion: ensembles, TTA, VinDr reader fusion
    "onnx",  # tools/export.py
    "hydra-core",  # LazyConfig key=value overrides (detectron2's LazyConfig.apply_overrides)
    "black",  # LazyConfig.to_py (the saved config.yaml's Python twin)
    "webdataset",  # prepared shard copies: writing and streaming them
]

EXTRAS_REQUIRE = {
    # exported models on ONNX Runtime / OpenVINO (--backend onnxruntime|openvino, --int8)
    "deploy": ["onnxruntime", "openvino"],
    # the web app and HTTP API
    "serve": ["fastapi", "pydantic", "uvicorn", "python-multipart", "onnxruntime"],
    # experiment tracking and hyper-parameter search
    "experiments": ["mlflow", "optuna"],
    # converting torchxrayvision's chest-X-ray trunks
    "convert": ["torchxrayvision"],
}
EXTRAS_REQUIRE["all"] = sorted({p for deps in EXTRAS_REQUIRE.values() for p in deps})

setup(
    name="cxr",
    version="0.1.0",
    description="detectron2 plugin for chest X-ray lesion detection and clinical evaluation",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["cxr", "cxr.*", "cxr_runtime", "cxr_runtime.*"]),
    # the served app's page (tools/serve.py)
    package_data={"cxr_runtime.serve": ["static/*"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
